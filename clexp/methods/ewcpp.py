"""EWC++ (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning", §4.1): EWC whose diagonal
Fisher is a moving average kept during training, so that it needs no pass over an experience's data
at its end and no boundary to be estimated:

    F ← α·F_batch + (1 − α)·F          every `update_every` optimizer steps, from the current batch
    penalty = (λ/2)·Σ F* (θ − θ*)²      F*, θ*: the running Fisher and the parameters at the last
                                        consolidation (a boundary; in a task-free stream every
                                        `consolidate_every` steps)

α weights the NEW estimate (the paper's convention, F_θ^t = α F_θ^t + (1 − α) F_θ^{t−1}; Avalanche's
`ewc_alpha` alike). F_batch is a per-sample Fisher of the batch from the curvature engine (`exact` over
the classes, or `sampled` labels from the model), never the squared mini-batch gradient; it is taken
on the batch's inputs at the parameters before the step (eval mode). The first update of the stream
sets F = F_batch (nothing to average with yet). F is updated on the first batch after each
consolidation (and of the stream) and every `update_every` steps after it; it keeps running across
consolidations (the moving average never restarts), while the penalty holds the snapshot F* — replaced,
not summed, at each consolidation ("at the end of each task, we simply store F_θ^t as F_θ^{k−1}").

All state (F, the step counter, the update count) is in the penalty's buffers: saved in stream
checkpoints, a resumed run continues bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.config.argspec import check_args
from clexp.curvature.fisher import FISHER_VARIANTS
from clexp.methods.base import ImportanceCallback, batch_generator, batch_mean
from clexp.methods.quadratic import QuadraticPenalty, buffer_key

VARIANTS = ("exact", "sampled")  # per-sample Fishers only: never the squared batch gradient


class RunningFisherPenalty(QuadraticPenalty):
    """`strength · factor · Σ Ω (θ − θ*)²` with Ω replaced at each consolidation (online mode, γ = 0),
    plus the running Fisher `fisher__*` and two counters: `steps` (optimizer steps since the last
    consolidation) and `fisher_updates` (updates of F so far)."""

    def __init__(self, strength: float, factor: float):
        super().__init__(strength, factor=factor, mode="online", gamma=0.0)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("fisher_updates", torch.zeros((), dtype=torch.long))
        self._steps, self._updates = 0, 0  # python mirrors: no device sync per step

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        params = dict(model.named_parameters())
        for n in self.names:
            self.register_buffer(f"fisher__{buffer_key(n)}", torch.zeros_like(params[n], dtype=torch.float32))

    def running(self, kind: str) -> list[torch.Tensor]:
        return [getattr(self, f"{kind}__{buffer_key(n)}") for n in self.names]

    def tick(self) -> None:
        self._steps += 1
        self.steps.fill_(self._steps)

    def restart(self) -> None:
        self._steps = 0
        self.steps.fill_(0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._steps, self._updates = int(self.steps.item()), int(self.fisher_updates.item())


class EWCPPPenalty(RunningFisherPenalty):
    """(λ/2)·Σ F* (θ − θ*)², F* the running Fisher at the last consolidation."""

    ARGS = {"lam": ("number", {"low": 0})}

    def __init__(self, lam: float):
        check_args(EWCPPPenalty.ARGS, lam=lam)
        super().__init__(lam, factor=0.5)


@torch.no_grad()
def moving_average(running: list[torch.Tensor], new: list[torch.Tensor], alpha: float, first: bool) -> None:
    """F ← α·F_new + (1 − α)·F, or F ← F_new on the first update."""
    if first:
        torch._foreach_copy_(running, new)
    else:  # F + α(F_new − F): one fused pass
        torch._foreach_lerp_(running, new, alpha)


class OnlineFisher(ImportanceCallback):
    """EWC++'s running Fisher, updated from the training batches; consolidated (F* ← F, θ* ← θ) at each
    boundary, or every `consolidate_every` optimizer steps in a task-free stream."""

    needs_boundaries = False
    ARGS = {"alpha": ("number", {"low": 0, "high": 1, "low_open": True}), "update_every": ("int", {}),
            "variant": ("choice", VARIANTS), "samples": ("int", {}), "chunk_size": ("int", {})}

    def __init__(self, alpha: float = 0.9, update_every: int = 10, variant: str = "sampled", samples: int = 1,
                 chunk_size: int = 256, seed: int = 0, consolidate_every: int | None = None, plot: bool = True):
        check_args(OnlineFisher.ARGS, alpha=alpha, update_every=update_every, variant=variant, samples=samples,
                   chunk_size=chunk_size)
        super().__init__(plot, consolidate_every)
        assert set(VARIANTS) <= set(FISHER_VARIANTS)
        self.alpha, self.update_every, self.variant = float(alpha), int(update_every), variant
        self.samples, self.chunk_size, self.seed = samples, chunk_size, seed

    def batch_fisher(self, trainer, pl_module, x, y, t) -> dict[str, torch.Tensor]:
        """The per-sample Fisher of one batch (a mean over its inputs, each task id with its own mask)."""
        from clexp.curvature import diag_fisher

        g = batch_generator(pl_module, self.seed, trainer)
        return batch_mean(pl_module, x, y, t, lambda xs, ys, mask: diag_fisher(
            pl_module.model, xs, ys, variant=self.variant, samples=self.samples, chunk_size=self.chunk_size,
            output_mask=mask, generator=g))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        reg = pl_module.regularizer
        if reg._steps % self.update_every:
            return
        x, y, t = batch[:3]
        new = self.batch_fisher(trainer, pl_module, x, y, t)
        moving_average(reg.running("fisher"), [new[n] for n in reg.names], self.alpha, reg._updates == 0)
        reg._updates += 1
        reg.fisher_updates.fill_(reg._updates)

    def after_step(self, trainer, pl_module, batch) -> None:
        pl_module.regularizer.tick()

    def after_consolidation(self, trainer, pl_module) -> None:
        pl_module.regularizer.restart()

    def estimate(self, trainer, pl_module):
        reg = pl_module.regularizer
        return {n: f.clone() for n, f in zip(reg.names, reg.running("fisher"))}
