"""L2 towards the parameters at the end of the previous experience: (λ/2)·Σ (θ − θ*)²."""

from __future__ import annotations

import torch

from clexp.methods.base import ImportanceCallback
from clexp.methods.quadratic import QuadraticPenalty


class L2Penalty(QuadraticPenalty):
    """(λ/2)·Σ Ω (θ − θ*)² with Ω = 1 (replaced at every consolidation), anchor the latest parameters."""

    def __init__(self, lam: float):
        super().__init__(lam, factor=0.5, mode="online", gamma=0.0)


class UniformImportance(ImportanceCallback):
    """Ω = 1 for every trainable parameter."""

    def __init__(self, plot: bool = False):
        super().__init__(plot)

    def estimate(self, trainer, pl_module):
        return {n: torch.ones_like(p) for n, p in pl_module.model.named_parameters() if p.requires_grad}
