"""Memory Aware Synapses (Aljundi et al. 2018): λ·Σ Ω (θ − θ*)², Ω the mean over the experience's
inputs of the per-sample |∂‖f(x)‖²₂/∂θ| (no labels), accumulated over experiences. `variant=batch_mean`
(compatibility): |∂ mean_batch ‖f‖²/∂θ| averaged over the experience's mini-batches, as public code
computes it; `output_mean`: the mean of f_c² over the allowed outputs instead of ‖f‖² (Hsu et al. 2018's
code). See clexp/curvature/sensitivity.py."""

from __future__ import annotations

from clexp.config.argspec import check_args
from clexp.curvature.sensitivity import MAS_VARIANTS
from clexp.methods.base import ImportanceCallback, batch_mean, experience_shard, over_chunks
from clexp.methods.quadratic import QuadraticPenalty


class MASPenalty(QuadraticPenalty):
    """λ·Σ Ω (θ − θ*)², Ω ← Ω + Ω_t, anchor the latest parameters."""

    ARGS = {"lam": ("number", {"low": 0})}

    def __init__(self, lam: float):
        check_args(MASPenalty.ARGS, lam=lam)
        super().__init__(lam, factor=1.0, mode="online", gamma=1.0)


class MASImportance(ImportanceCallback):
    """Mean per-sample |∂‖f(x)‖²/∂θ| over the experience's inputs (`variant` per_sample), or the mean
    over its mini-batches of `batch_size` inputs of |∂ mean_batch ‖f‖²/∂θ| (`batch_mean`)."""

    ARGS = {"max_samples": ("int", {"allow_none": True}), "chunk_size": ("int", {}),
            "consolidate_every": ("int", {"allow_none": True}), "variant": ("choice", MAS_VARIANTS),
            "batch_size": ("int", {"allow_none": True}), "output_mean": ("choice", (False, True))}

    def __init__(self, max_samples: int | None = None, chunk_size: int = 256, seed: int = 0, plot: bool = True,
                 consolidate_every: int | None = None, variant: str = "per_sample", batch_size: int | None = None,
                 output_mean: bool = False):
        check_args(MASImportance.ARGS, max_samples=max_samples, chunk_size=chunk_size,
                   consolidate_every=consolidate_every, variant=variant, batch_size=batch_size,
                   output_mean=output_mean)
        super().__init__(plot, consolidate_every)
        if variant == "batch_mean" and batch_size is None:
            raise ValueError("MASImportance(variant='batch_mean') needs batch_size, the training batch size "
                             "(conf/method/mas.yaml passes batch_size: ${train.batch_size})")
        self.max_samples, self.chunk_size, self.seed = max_samples, chunk_size, seed
        self.variant, self.batch_size, self.output_mean = variant, batch_size, bool(output_mean)

    def estimate(self, trainer, pl_module):
        from clexp.curvature import mas_importance

        x, y = experience_shard(trainer, pl_module, self.max_samples, self.seed)
        mask = pl_module.output_mask(int(pl_module.experience))

        def mas(xc, yc, reduce):
            return mas_importance(pl_module.model, xc, chunk_size=self.chunk_size, output_mask=mask, reduce=reduce,
                                  variant=self.variant, batch_size=self.batch_size, output_mean=self.output_mean)

        if self.variant == "batch_mean":  # whole mini-batches per chunk, each chunk counted in mini-batches
            return over_chunks(trainer, pl_module, x, y, mas, self.batch_size,
                               lambda n: -(-n // self.batch_size), desc="MAS importance")
        return over_chunks(trainer, pl_module, x, y, mas, desc="MAS importance")

    def estimate_batch(self, trainer, pl_module, x, y, t):
        """The same mean on one training batch (task-free streams, the online setting)."""
        from clexp.curvature import mas_importance

        return batch_mean(pl_module, x, y, t, lambda xs, ys, mask: mas_importance(
            pl_module.model, xs, chunk_size=self.chunk_size, output_mask=mask, variant=self.variant,
            batch_size=len(xs), output_mean=self.output_mean))
