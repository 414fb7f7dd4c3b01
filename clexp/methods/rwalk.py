"""RWalk (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning"): EWC++'s running Fisher
plus a path-integral score of each parameter, the importance their sum,

    penalty = λ·Σ_i (F*_i + s_i)·(θ_i − θ*_i)²                               (the paper's Eq. 9)

The score s: along training, every Δt = `update_every` optimizer steps an interval [t, t + Δt] closes,

    ΔL_i = Σ_{steps in the interval} −g_i·Δθ_i      g: the task loss's gradient (no penalty), Δθ: the
                                                    update the optimizer made (any optimizer)
    r_i  = ΔL_i / (½·F_i(t)·(θ_i(t + Δt) − θ_i(t))² + ε)      loss decrease over the KL divergence the
                                                    interval moved the model by (½ΔθᵀFΔθ), F the
                                                    running Fisher at the interval's start

and the experience's score is the sum of its intervals' r. `variant` chooses between the paper's form
(default) and what the authors' code does (github.com/facebookresearch/agem, model/model.py,
`imp_method == 'RWALK'`); the differences, each a test in tests/test_rwalk.py:

1. the ½: paper ½·F·Δθ² in the denominator; code F·Δθ² (no ½).
2. negative scores: paper, negative values of the experience's score are set to zero ("since we care
   about positive influence of the parameters, negative scores are set to zero"); code, each
   interval's r is clipped at zero (`tf.nn.relu`) before it is summed.
3. ε: paper, an ε > 0 against division by zero (clexp: 1e-8 unless `eps` is set); code, 1e-3
   (`PARAM_XI_STEP`).
4. normalisation: paper, F and s enter Eq. 9 as they are; code, at each consolidation F and s are
   min-max normalised over all parameters together, (x − min)/(max − min + 1e-32), each into [0, 1].
5. old and new scores across experiences: paper, the average s ← ½(s_old + s_new) from the second
   consolidation on ("to avoid the regularization getting increasingly rigid"); code,
   `tf.assign_add(s, (s + s_new)/2)`: s ← s_old + ½(s_old + s_new), after doubling the first
   experience's score (so that s = s_new after the first).
6. the last, incomplete interval of an experience: paper, it closes at the consolidation like any
   other (s sums over the whole trajectory); code, it is dropped (its ΔL is reset at the task's end).

Not reproduced from the code, in either variant: its Fisher squares the mini-batch gradient of every
step of the interval and averages them; clexp's is a per-sample Fisher (sampled or exact, from the
curvature engine) on the first batch of each interval. F itself is EWC++'s (clexp/methods/ewcpp.py).

All running state (F, ΔL, θ at the interval's start, θ before the step, the experience's score, the
combined score, counters) is in the penalty's buffers: a resumed run continues bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.config.argspec import check_args
from clexp.methods.ewcpp import VARIANTS, OnlineFisher, RunningFisherPenalty
from clexp.methods.quadratic import buffer_key
from clexp.methods.si import accumulate, task_gradient

RWALK_VARIANTS = ("paper", "code")
DEFAULT_EPS = {"paper": 1e-8, "code": 1e-3}
NORMALISATION_EPS = 1e-32  # the code's EPSILON


class RWalkPenalty(RunningFisherPenalty):
    """λ·Σ (F* + s)(θ − θ*)², importance replaced at each consolidation.

    Buffers per parameter besides the running Fisher: `omega__*` (ΔL of the open interval),
    `istart__*` (θ at the interval's start), `prev__*` (θ before the current step), `expscore__*` (the
    experience's score so far), `score__*` (s combined over the consolidations), the non-persistent
    `grad__*` (the task loss's gradient of the step).
    """

    KINDS = ("omega", "istart", "prev", "expscore", "score", "grad")

    ARGS = {"lam": ("number", {"low": 0})}

    def __init__(self, lam: float):
        check_args(RWalkPenalty.ARGS, lam=lam)
        super().__init__(lam, factor=1.0)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        params = dict(model.named_parameters())
        for n in self.names:
            for kind in self.KINDS:
                self.register_buffer(f"{kind}__{buffer_key(n)}", torch.zeros_like(params[n], dtype=torch.float32),
                                     persistent=kind != "grad")


@torch.no_grad()
def interval_score(omega: list[torch.Tensor], drift: list[torch.Tensor], fisher: list[torch.Tensor], eps: float,
                   variant: str) -> list[torch.Tensor]:
    """r = ΔL / (c·F·Δθ² + ε), c = ½ (paper) or 1 (code); clipped at zero per interval (code)."""
    half = 0.5 if variant == "paper" else 1.0
    denom = torch._foreach_mul(drift, drift)
    torch._foreach_mul_(denom, fisher)
    torch._foreach_mul_(denom, half)
    torch._foreach_add_(denom, eps)
    r = torch._foreach_div(omega, denom)
    if variant == "code":
        torch._foreach_clamp_min_(r, 0.0)
    return r


@torch.no_grad()
def combine(old: list[torch.Tensor], new: list[torch.Tensor], first: bool, variant: str) -> list[torch.Tensor]:
    """The score after a consolidation from the combined score so far and the experience's `new` one
    (already clipped as the variant clips): paper ½(old + new), code old + ½(old + new); the first: new."""
    if first:
        return [n.clone() for n in new]
    if variant == "paper":
        return [0.5 * (o + n) for o, n in zip(old, new)]
    return [o + 0.5 * (o + n) for o, n in zip(old, new)]


@torch.no_grad()
def min_max(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """(x − min)/(max − min + 1e-32), min and max over every tensor together (the code's normalisation)."""
    lo = min(float(t.min()) for t in tensors)
    hi = max(float(t.max()) for t in tensors)
    return [(t - lo) / (hi - lo + NORMALISATION_EPS) for t in tensors]


class RWalk(OnlineFisher):
    """EWC++'s running Fisher (`OnlineFisher`) plus the path score; see the module docstring."""

    # `variant` is RWalk's (paper, code) here; the Fisher's is `fisher_variant`
    ARGS = {"variant": ("choice", RWALK_VARIANTS), "fisher_variant": ("choice", VARIANTS),
            "eps": ("number", {"low": 0, "low_open": True, "allow_none": True})}

    def __init__(self, alpha: float = 0.9, update_every: int = 10, eps: float | None = None, variant: str = "paper",
                 fisher_variant: str = "sampled", samples: int = 1, chunk_size: int = 256, seed: int = 0,
                 consolidate_every: int | None = None, plot: bool = True):
        check_args(RWalk.ARGS, variant=variant, fisher_variant=fisher_variant, eps=eps)
        eps = DEFAULT_EPS[variant] if eps is None else eps
        super().__init__(alpha, update_every, fisher_variant, samples, chunk_size, seed, consolidate_every, plot)
        self.eps, self.rwalk_variant = float(eps), variant

    def _params(self, pl_module) -> list[torch.Tensor]:
        return [p.detach() for p in pl_module.regularizer._params(pl_module.model)]

    def on_train_start(self, trainer, pl_module):
        from clexp.methods.si import continuing

        reg = pl_module.regularizer
        if continuing(trainer, pl_module) or int(reg.consolidations) > 0 or reg._updates > 0:
            return  # the path goes on: θ_prev and the interval's start are where the last step left them
        params = self._params(pl_module)
        torch._foreach_copy_(reg.running("prev"), params)
        torch._foreach_copy_(reg.running("istart"), params)
        torch._foreach_zero_(reg.running("omega"))

    def on_after_backward(self, trainer, pl_module):
        task_gradient(trainer, pl_module, pl_module.regularizer.running("grad"))

    def after_step(self, trainer, pl_module, batch) -> None:
        reg = pl_module.regularizer
        params = self._params(pl_module)
        accumulate(reg.running("omega"), reg.running("prev"), params, reg.running("grad"))
        reg.tick()
        if reg._steps % self.update_every == 0:
            self.close_interval(reg, params)

    @torch.no_grad()
    def close_interval(self, reg, params: list[torch.Tensor]) -> None:
        """r of the interval into the experience's score; the next interval starts at θ."""
        drift = torch._foreach_sub(params, reg.running("istart"))
        r = interval_score(reg.running("omega"), drift, reg.running("fisher"), self.eps, self.rwalk_variant)
        torch._foreach_add_(reg.running("expscore"), r)
        torch._foreach_zero_(reg.running("omega"))
        torch._foreach_copy_(reg.running("istart"), params)

    @torch.no_grad()
    def estimate(self, trainer, pl_module):
        reg = pl_module.regularizer
        params = self._params(pl_module)
        if reg._steps % self.update_every:  # an incomplete interval is open
            if self.rwalk_variant == "paper":
                self.close_interval(reg, params)
            else:  # the code drops it
                torch._foreach_zero_(reg.running("omega"))
                torch._foreach_copy_(reg.running("istart"), params)
        new = reg.running("expscore")
        if self.rwalk_variant == "paper":
            new = [s.clamp_min(0.0) for s in new]
        score = combine(reg.running("score"), new, int(reg.consolidations) == 0, self.rwalk_variant)
        torch._foreach_copy_(reg.running("score"), score)
        fisher = [f.clone() for f in reg.running("fisher")]
        if self.rwalk_variant == "code":
            fisher, score = min_max(fisher), min_max(score)
        return {n: f + s for n, f, s in zip(reg.names, fisher, score)}

    def after_consolidation(self, trainer, pl_module) -> None:
        reg = pl_module.regularizer
        torch._foreach_zero_(reg.running("expscore"))
        super().after_consolidation(trainer, pl_module)

