"""Importance callbacks: at the end of each experience, estimate per-parameter importances on its
training data and consolidate them into the module's quadratic penalty.

Adding a quadratic method = one `estimate` here (or in `clexp.importance`) + one config file.
Under DDP each rank estimates on its own shard of the experience; the estimators all-reduce.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from clexp.plots import log_importance


def experience_shard(trainer, pl_module, max_samples: int | None, seed: int):
    """This rank's share of the current experience's training inputs and targets (a seeded subset
    of `max_samples` inputs when set), on the module's device."""
    exp = pl_module.current_experience
    x, y = exp.x_train, exp.y_train
    if max_samples is not None and max_samples < len(y):
        g = torch.Generator().manual_seed(seed * 7919 + exp.index)
        keep = torch.randperm(len(y), generator=g)[:max_samples]
        x, y = x[keep], y[keep]
    rank, world = trainer.global_rank, trainer.world_size
    x, y = x[rank::world], y[rank::world]
    return x.to(pl_module.device), y.to(pl_module.device)


class ImportanceCallback(pl.Callback):
    """Base class: `estimate(trainer, pl_module) -> {param name: importance}` at each boundary."""

    def __init__(self, plot: bool = True):
        self.plot = plot

    def estimate(self, trainer, pl_module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_train_end(self, trainer, pl_module):
        importance = self.estimate(trainer, pl_module)
        pl_module.regularizer.consolidate(importance, pl_module.model)
        if self.plot and trainer.is_global_zero:
            log_importance(trainer, importance, int(pl_module.experience), type(self).__name__)


class FisherImportance(ImportanceCallback):
    """Diagonal Fisher of the experience (EWC, online EWC): `variant` exact | sampled | empirical | batch."""

    def __init__(self, variant: str = "exact", samples: int = 1, max_samples: int | None = None,
                 chunk_size: int = 256, seed: int = 0, plot: bool = True):
        super().__init__(plot)
        self.variant, self.samples, self.max_samples = variant, samples, max_samples
        self.chunk_size, self.seed = chunk_size, seed

    def estimate(self, trainer, pl_module):
        from clexp.importance.fisher import diag_fisher

        x, y = experience_shard(trainer, pl_module, self.max_samples, self.seed)
        i = int(pl_module.experience)
        g = torch.Generator(device=pl_module.device).manual_seed(self.seed * 104729 + i)
        return diag_fisher(pl_module.model, x, y, variant=self.variant, samples=self.samples,
                           chunk_size=self.chunk_size, output_mask=pl_module.output_mask(i), generator=g)


class MASImportance(ImportanceCallback):
    """MAS: mean per-sample |∂‖f(x)‖²/∂θ| over the experience's inputs (no labels needed)."""

    def __init__(self, max_samples: int | None = None, chunk_size: int = 256, seed: int = 0, plot: bool = True):
        super().__init__(plot)
        self.max_samples, self.chunk_size, self.seed = max_samples, chunk_size, seed

    def estimate(self, trainer, pl_module):
        from clexp.importance.mas import mas_importance

        x, _ = experience_shard(trainer, pl_module, self.max_samples, self.seed)
        return mas_importance(pl_module.model, x, chunk_size=self.chunk_size,
                              output_mask=pl_module.output_mask(int(pl_module.experience)))


class UniformImportance(ImportanceCallback):
    """Ω = 1 for every parameter (L2 towards the previous parameters)."""

    def __init__(self, plot: bool = False):
        super().__init__(plot)

    def estimate(self, trainer, pl_module):
        return {n: torch.ones_like(p) for n, p in pl_module.model.named_parameters() if p.requires_grad}


class PathIntegral(ImportanceCallback):
    """SI: the path integral ω after every optimizer step, consolidated at the boundary with ξ.

    The running sums live in the `PathIntegralPenalty`'s buffers (checkpointed with the module).
    """

    def __init__(self, xi: float = 0.1, plot: bool = True):
        super().__init__(plot)
        self.xi = xi

    def _params(self, pl_module) -> list[torch.Tensor]:
        return [p.detach() for p in pl_module.regularizer._params(pl_module.model)]

    def on_train_start(self, trainer, pl_module):
        if getattr(pl_module, "resumed_mid_experience", False):
            return  # ω, start and prev come from the checkpoint
        reg = pl_module.regularizer
        params = self._params(pl_module)
        torch._foreach_copy_(reg.running("start"), params)
        torch._foreach_copy_(reg.running("prev"), params)
        torch._foreach_zero_(reg.running("omega"))

    def on_after_backward(self, trainer, pl_module):
        """The task loss's gradient, before the module adds the penalty's (callbacks run first)."""
        grads = pl_module.regularizer.running("grad")
        for g, p in zip(grads, pl_module.regularizer._params(pl_module.model)):
            if p.grad is None:
                g.zero_()
            else:
                g.copy_(p.grad)
        from clexp.module import loss_scale

        scale = loss_scale(trainer, pl_module.device)
        if scale is not None:  # mixed precision: the backward's gradients are still scaled
            torch._foreach_div_(grads, scale)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        from clexp.importance.path_integral import accumulate

        reg = pl_module.regularizer
        accumulate(reg.running("omega"), reg.running("prev"), self._params(pl_module), reg.running("grad"))

    def estimate(self, trainer, pl_module):
        from clexp.importance.path_integral import importance

        reg = pl_module.regularizer
        omega_new = importance(reg.running("omega"), reg.running("start"), self._params(pl_module), self.xi)
        return dict(zip(reg.names, omega_new))


class DistillationTeacher(pl.Callback):
    """LwF: at the end of each experience the model becomes the frozen teacher for the next ones."""

    def on_train_end(self, trainer, pl_module):
        exp = pl_module.current_experience
        pl_module.regularizer.consolidate(pl_module.model, exp.output_classes, exp.index)


class KFACImportance(FisherImportance):
    """KFAC-EWC: Kronecker factors of the Linear / Conv2d layers (exact over classes, or sampled) and
    the diagonal Fisher of the other parameters, consolidated into a `KroneckerPenalty`. Same
    options as `FisherImportance` (variant: exact or sampled)."""

    def on_train_end(self, trainer, pl_module):
        from clexp.importance.fisher import diag_fisher
        from clexp.importance.kfac import kfac_diagonal, kfac_factors

        x, y = experience_shard(trainer, pl_module, self.max_samples, self.seed)
        i = int(pl_module.experience)
        mask = pl_module.output_mask(i)
        g = torch.Generator(device=pl_module.device).manual_seed(self.seed * 104729 + i)
        model, reg = pl_module.model, pl_module.regularizer
        factors = kfac_factors(model, x, self.variant, self.samples, self.chunk_size, mask, g)
        factors = {k: {n: _all_reduce_mean(v, trainer) for n, v in f.items()} for k, f in factors.items()}
        diagonal = {}
        if reg.diag.names:
            variant = "exact" if self.variant == "exact" else "sampled"
            full = diag_fisher(model, x, y, variant=variant, samples=self.samples, chunk_size=self.chunk_size,
                               output_mask=mask, generator=g)
            diagonal = {n: full[n] for n in reg.diag.names}
        reg.consolidate(factors, diagonal, model)
        if self.plot and trainer.is_global_zero:
            shown = dict(diagonal)
            for layer, f in factors.items():
                for leaf, v in kfac_diagonal(model.get_submodule(layer), f).items():
                    shown[f"{layer}.{leaf}"] = v
            log_importance(trainer, shown, i, "KFAC diagonal")


def _all_reduce_mean(value: torch.Tensor, trainer) -> torch.Tensor:
    """Average a factor over ranks (each rank's factor is a mean over its equal-sized shard)."""
    import torch.distributed as dist

    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= trainer.world_size
    return value
