"""EWC (Kirkpatrick et al. 2017) and online EWC (Schwarz et al. 2018): the diagonal Fisher of each
experience, consolidated at its end into the quadratic penalty (λ/2)·Σ F (θ − θ*)².

separate (EWC): Σ_t F_t (θ − θ*_t)², kept as one merged quadratic (O(P) per step);
online: F̃ ← γ·F̃ + F_t with the latest parameters as the anchor.
clip_max (the normalised Fisher of Maltoni & Lomonaco 2019, AR1): F̄_t = (1/t)·Σ_{s≤t} F_s, the mean
over the experiences seen, and the penalty's importance min(F̄_t, clip_max) with the latest
parameters as the anchor (this replaces the mode's accumulation); the fraction of the weights at the
clip (F̄ ≥ clip_max) is logged per experience as `importance/saturated`.
"""

from __future__ import annotations

import torch

from clexp.config.argspec import check_args, rules_of
from clexp.core.step_count import stream_steps
from clexp.curvature.fisher import BATCH_VARIANTS, FISHER_VARIANTS
from clexp.methods.base import ImportanceCallback, batch_generator, batch_mean, experience_shard, over_chunks
from clexp.methods.quadratic import QuadraticPenalty, buffer_key


class EWCPenalty(QuadraticPenalty):
    """(λ/2)·Σ F (θ − θ*)²; `mode` separate (EWC) or online (online EWC, decay `gamma`); with
    `clip_max`: (λ/2)·Σ min(F̄, clip_max)(θ − θ*)², F̄ the mean Fisher of the experiences seen, θ* the
    latest parameters (Maltoni & Lomonaco 2019)."""

    ARGS = {"lam": ("number", {"low": 0}), "gamma": ("number", {"low": 0, "high": 1, "low_open": True}),
            "clip_max": ("number", {"low": 0, "low_open": True, "allow_none": True})}

    def __init__(self, lam: float, mode: str = "separate", gamma: float = 1.0, clip_max: float | None = None):
        check_args(EWCPenalty.ARGS, lam=lam, gamma=gamma, clip_max=clip_max)
        super().__init__(lam, factor=0.5, mode=mode, gamma=gamma)
        self.clip_max = None if clip_max is None else float(clip_max)
        if self.clip_max is not None:  # the fraction of the weights at the clip at the last consolidation
            self.register_buffer("saturated", torch.zeros((), dtype=torch.float64))

    def bind(self, model, names=None) -> None:
        super().bind(model, names)
        if self.clip_max is not None:  # F̄, the unclipped mean over the experiences (state: resumes exactly)
            for n in self.names:
                self.register_buffer(f"mean__{buffer_key(n)}", torch.zeros_like(self.importance(n)))

    @torch.no_grad()
    def consolidate(self, importance, model) -> None:
        if self.clip_max is None:
            return super().consolidate(importance, model)
        params = dict(model.named_parameters())
        t = int(self.consolidations) + 1  # experiences seen, this one included
        hit, total = 0, 0
        for n in self.names:
            mean = getattr(self, f"mean__{buffer_key(n)}")
            mean.add_(importance[n].to(mean.device, torch.float32).sub(mean), alpha=1.0 / t)
            self.importance(n).copy_(mean.clamp(max=self.clip_max))
            self.anchor(n).copy_(params[n].detach().to(torch.float32))
            hit += int((mean >= self.clip_max).sum())
            total += mean.numel()
        self.saturated.fill_(hit / max(total, 1))
        self.consolidations += 1
        self._active = True


class FisherImportance(ImportanceCallback):
    """Diagonal Fisher of the experience: `variant` exact | sampled | empirical | batch | predicted |
    batch_predicted (the last two: the model's argmax label, as the papers' code did; compatibility).

    `chunk_size` bounds memory only (inputs per batched backward). `batch_size` is the batch
    variant's mini-batch size B — the training batch size (the configs pass `train.batch_size`):
    the batch Fisher squares mini-batch gradients, ≈ 1/B of the empirical Fisher; required for it.
    From the training batches (task-free streams, `train.online`): the same variant on each batch
    right after its step, averaged over the batches since the last consolidation (`batch` there
    squares each training batch's gradient: B = the batch's size).
    """

    VARIANTS = FISHER_VARIANTS
    ARGS = {"variant": ("choice", FISHER_VARIANTS), "samples": ("int", {}),
            "max_samples": ("int", {"allow_none": True}), "chunk_size": ("int", {}),
            "batch_size": ("int", {"allow_none": True}), "consolidate_every": ("int", {"allow_none": True})}

    def __init__(self, variant: str = "exact", samples: int = 1, max_samples: int | None = None,
                 chunk_size: int = 256, seed: int = 0, plot: bool = True, batch_size: int | None = None,
                 consolidate_every: int | None = None):
        check_args(rules_of(type(self)), variant=variant, samples=samples, max_samples=max_samples,
                   chunk_size=chunk_size, batch_size=batch_size, consolidate_every=consolidate_every)
        super().__init__(plot, consolidate_every)
        if variant in BATCH_VARIANTS and batch_size is None:
            raise ValueError(f"FisherImportance(variant={variant!r}) needs batch_size, the training batch size "
                             "(method configs pass batch_size: ${train.batch_size})")
        self.variant, self.samples, self.max_samples = variant, samples, max_samples
        self.chunk_size, self.seed, self.batch_size = chunk_size, seed, batch_size

    def estimate(self, trainer, pl_module):
        from clexp.curvature import diag_fisher

        x, y = experience_shard(trainer, pl_module, self.max_samples, self.seed)
        i = int(pl_module.experience)
        g = torch.Generator(device=pl_module.device).manual_seed(self.seed * 104729 + i)

        def fisher(xc, yc, reduce):
            return diag_fisher(pl_module.model, xc, yc, variant=self.variant, samples=self.samples,
                               chunk_size=self.chunk_size, output_mask=pl_module.output_mask(i), generator=g,
                               batch_size=self.batch_size, reduce=reduce)

        if self.variant in BATCH_VARIANTS:  # whole mini-batches per chunk, each chunk counted in mini-batches
            return over_chunks(trainer, pl_module, x, y, fisher, self.batch_size,
                               lambda n: -(-n // self.batch_size), desc="Fisher")
        return over_chunks(trainer, pl_module, x, y, fisher, desc="Fisher")

    def apply(self, trainer, pl_module, importance) -> None:
        super().apply(trainer, pl_module, importance)
        reg = pl_module.regularizer
        if getattr(reg, "clip_max", None) is not None:
            i, frac = int(pl_module.experience), float(reg.saturated)
            if trainer.is_global_zero:
                print(f"EWC clip_max={reg.clip_max:g}: {100 * frac:.2f}% of the weights saturated "
                      f"(experience {i + 1})")
            if trainer.logger is not None:
                trainer.logger.log_metrics({"importance/saturated": frac, "experience": i},
                                           step=stream_steps(trainer))

    def estimate_batch(self, trainer, pl_module, x, y, t):
        """The same Fisher on one training batch (task-free streams, the online setting)."""
        from clexp.curvature import diag_fisher

        g = batch_generator(pl_module, self.seed, trainer)
        return batch_mean(pl_module, x, y, t, lambda xs, ys, mask: diag_fisher(
            pl_module.model, xs, ys, variant=self.variant, samples=self.samples, chunk_size=self.chunk_size,
            output_mask=mask, generator=g, batch_size=len(xs)))
