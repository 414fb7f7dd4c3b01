"""L2 towards the parameters at the end of the previous experience: (λ/2)·Σ Ω (θ − θ*)², Ω = 1 on
every parameter element that training has used so far and 0 elsewhere.

"Used" means changed by the optimizer while some experience was trained: θ at the end of an
experience differs from θ at its start, or the element was used by an earlier experience. A head of
an experience not yet trained (multi-head task-IL), or the outputs of a shared head masked out so
far (task-IL), receive no gradient and do not move: their Ω stays 0, so the next experiences train
them freely instead of pulling them back to their random initialisation — as EWC, SI and MAS give
them zero importance. The test costs nothing per step and needs no extra state: θ at the start of
experience 0 is kept in the anchor buffers (unused until the first consolidation), and at the start
of a later experience θ is the anchor of the previous consolidation. (With weight decay an element
moves without any gradient, so it counts as used.)
"""

from __future__ import annotations

import torch

from clexp.config.argspec import check_args
from clexp.methods.base import ImportanceCallback
from clexp.methods.quadratic import QuadraticPenalty


class L2Penalty(QuadraticPenalty):
    """(λ/2)·Σ Ω (θ − θ*)² with Ω ∈ {0, 1} (replaced at every consolidation), anchor the latest parameters."""

    ARGS = {"lam": ("number", {"low": 0})}

    def __init__(self, lam: float):
        check_args(L2Penalty.ARGS, lam=lam)
        super().__init__(lam, factor=0.5, mode="online", gamma=0.0)


class UniformImportance(ImportanceCallback):
    """Ω = 1 for every parameter element used so far (moved during a trained experience), else 0."""

    def __init__(self, plot: bool = False, consolidate_every: int | None = None):
        super().__init__(plot, consolidate_every)

    def on_train_start(self, trainer, pl_module):
        reg = pl_module.regularizer
        if reg._active or getattr(pl_module, "resumed_mid_experience", False):
            return  # the anchor already holds θ at this experience's start (consolidated, or checkpointed)
        with torch.no_grad():
            for name, p in zip(reg.names, reg._params(pl_module.model)):
                reg.anchor(name).copy_(p.detach())

    @torch.no_grad()
    def estimate(self, trainer, pl_module):
        reg = pl_module.regularizer
        params = dict(pl_module.model.named_parameters())
        return {n: ((reg.importance(n) > 0) | (params[n].detach() != reg.anchor(n))).float() for n in reg.names}
