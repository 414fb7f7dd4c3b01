"""Memory Aware Synapses (Aljundi et al. 2018): λ·Σ Ω (θ − θ*)², Ω the mean over the experience's
inputs of the per-sample |∂‖f(x)‖²₂/∂θ| (no labels), accumulated over experiences."""

from __future__ import annotations

from clexp.argspec import check_args
from clexp.methods.base import ImportanceCallback, batch_mean, experience_shard, over_chunks
from clexp.methods.quadratic import QuadraticPenalty


class MASPenalty(QuadraticPenalty):
    """λ·Σ Ω (θ − θ*)², Ω ← Ω + Ω_t, anchor the latest parameters."""

    ARGS = {"lam": ("number", {"low": 0})}

    def __init__(self, lam: float):
        check_args(MASPenalty.ARGS, lam=lam)
        super().__init__(lam, factor=1.0, mode="online", gamma=1.0)


class MASImportance(ImportanceCallback):
    """Mean per-sample |∂‖f(x)‖²/∂θ| over the experience's inputs."""

    ARGS = {"max_samples": ("int", {"allow_none": True}), "chunk_size": ("int", {}),
            "consolidate_every": ("int", {"allow_none": True})}

    def __init__(self, max_samples: int | None = None, chunk_size: int = 256, seed: int = 0, plot: bool = True,
                 consolidate_every: int | None = None):
        check_args(MASImportance.ARGS, max_samples=max_samples, chunk_size=chunk_size,
                   consolidate_every=consolidate_every)
        super().__init__(plot, consolidate_every)
        self.max_samples, self.chunk_size, self.seed = max_samples, chunk_size, seed

    def estimate(self, trainer, pl_module):
        from clexp.curvature import mas_importance

        x, y = experience_shard(trainer, pl_module, self.max_samples, self.seed)
        mask = pl_module.output_mask(int(pl_module.experience))

        def mas(xc, yc, reduce):
            return mas_importance(pl_module.model, xc, chunk_size=self.chunk_size, output_mask=mask, reduce=reduce)

        return over_chunks(trainer, pl_module, x, y, mas, desc="MAS importance")

    def estimate_batch(self, trainer, pl_module, x, y, t):
        """The same mean on one training batch (task-free streams, the online setting)."""
        from clexp.curvature import mas_importance

        return batch_mean(pl_module, x, y, t, lambda xs, ys, mask: mas_importance(
            pl_module.model, xs, chunk_size=self.chunk_size, output_mask=mask))
