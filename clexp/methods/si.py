"""Synaptic Intelligence (Zenke et al. 2017): c·Σ Ω (θ − θ*)², Ω accumulated from the path integral.

After every optimizer step: ω_k += −g_k · Δθ_k, with g the gradient of the UNREGULARIZED loss at the
pre-step parameters and Δθ the update the optimizer actually made (any optimizer). No second
backward: g is read right after the backward of the task loss, before the penalty's analytic
gradient 2·c·Ω(θ − θ*) is added to it. At the boundary: Ω += ω / ((θ_end − θ_start)² + ξ).

The running sums live in the penalty's buffers rather than in the callback: they are then saved in
stream checkpoints (resume mid-experience) and travel with the module like the importances.

Task-free form (a stream without boundaries, `scenario.task_free=true`): the same path integral,
consolidated every `consolidate_every` optimizer steps of the stream instead of at boundaries — Ω +=
ω / ((θ − θ_start)² + ξ) over the steps since the last consolidation, then ω ← 0, θ_start ← θ and the
anchor θ* ← θ. Nothing else changes: ω never needed a boundary, only its consolidation did.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.config.argspec import check_args
from clexp.core.step_count import stream_steps
from clexp.methods.base import ImportanceCallback, task_free
from clexp.methods.quadratic import QuadraticPenalty, buffer_key


class PathIntegralPenalty(QuadraticPenalty):
    """`c · Σ Ω (θ − θ*)²` with Ω accumulated over experiences (online mode, γ = 1).

    Buffers per parameter: `omega__*` (ω, the path integral of this experience), `start__*` (θ at
    the experience's start), `prev__*` (θ before the current optimizer step) and the non-persistent
    `grad__*` (the task loss's gradient of the current step).
    """

    ARGS = {"strength": ("number", {"low": 0})}

    def __init__(self, strength: float, clamp: bool = False):
        check_args(PathIntegralPenalty.ARGS, strength=strength)
        super().__init__(strength, factor=1.0, mode="online", gamma=1.0, clamp_min=0.0 if clamp else None)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        params = dict(model.named_parameters())
        for n in self.names:
            for kind in ("omega", "start", "prev", "grad"):
                self.register_buffer(f"{kind}__{buffer_key(n)}", torch.zeros_like(params[n], dtype=torch.float32),
                                     persistent=kind != "grad")

    def running(self, kind: str) -> list[torch.Tensor]:
        return [getattr(self, f"{kind}__{buffer_key(n)}") for n in self.names]


@torch.no_grad()
def accumulate(omega, prev, params, grads) -> None:
    """ω += −g·(θ − θ_prev); then θ_prev ← θ. All lists aligned by parameter (fused passes, in place:
    θ_prev first becomes θ_prev − θ = −Δθ, so no parameter-sized temporary is allocated)."""
    torch._foreach_sub_(prev, params)
    torch._foreach_addcmul_(omega, grads, prev)
    torch._foreach_copy_(prev, params)


@torch.no_grad()
def importance(omega, start, params, xi: float) -> list[torch.Tensor]:
    """Ω_new = ω / ((θ − θ_start)² + ξ)."""
    drift = torch._foreach_sub(params, start)
    torch._foreach_mul_(drift, drift)
    torch._foreach_add_(drift, xi)
    return torch._foreach_div(omega, drift)


def task_gradient(trainer, pl_module, grads: list[torch.Tensor]) -> None:
    """Copy the task loss's gradient into `grads` (in `on_after_backward`: before the module adds the
    penalty's, callbacks run first); unscaled under mixed precision."""
    from clexp.core.module import loss_scale

    for g, p in zip(grads, pl_module.regularizer._params(pl_module.model)):
        if p.grad is None:
            g.zero_()
        else:
            g.copy_(p.grad)
    scale = loss_scale(trainer, pl_module.device)
    if scale is not None:  # mixed precision: the backward's gradients are still scaled
        torch._foreach_div_(grads, scale)


def continuing(trainer, pl_module) -> bool:
    """True at the start of a fit that continues a path integral: a resumed experience (its sums come
    from the checkpoint), or any experience but the first of a task-free stream (no boundary there)."""
    if getattr(pl_module, "resumed_mid_experience", False):
        return True
    return task_free(pl_module) and stream_steps(trainer) > 0


class PathIntegral(ImportanceCallback):
    """ω after every optimizer step, consolidated at the boundary with ξ (sums in the penalty's buffers);
    in a task-free stream every `consolidate_every` steps."""

    needs_boundaries = False

    ARGS = {"xi": ("number", {"low": 0, "low_open": True}), "consolidate_every": ("int", {"allow_none": True})}

    def __init__(self, xi: float = 0.1, plot: bool = True, consolidate_every: int | None = None):
        check_args(PathIntegral.ARGS, xi=xi, consolidate_every=consolidate_every)
        super().__init__(plot, consolidate_every)
        self.xi = xi

    def _params(self, pl_module) -> list[torch.Tensor]:
        return [p.detach() for p in pl_module.regularizer._params(pl_module.model)]

    def on_train_start(self, trainer, pl_module):
        if continuing(trainer, pl_module):
            return  # ω, start and prev come from the checkpoint, or go on from the last step
        reg = pl_module.regularizer
        params = self._params(pl_module)
        torch._foreach_copy_(reg.running("start"), params)
        torch._foreach_copy_(reg.running("prev"), params)
        torch._foreach_zero_(reg.running("omega"))

    def on_after_backward(self, trainer, pl_module):
        """The task loss's gradient, before the module adds the penalty's (callbacks run first)."""
        task_gradient(trainer, pl_module, pl_module.regularizer.running("grad"))

    def after_step(self, trainer, pl_module, batch):
        reg = pl_module.regularizer
        accumulate(reg.running("omega"), reg.running("prev"), self._params(pl_module), reg.running("grad"))

    def after_consolidation(self, trainer, pl_module):
        if task_free(pl_module):  # a new stretch of the path starts here (at a boundary: the next on_train_start)
            reg = pl_module.regularizer
            torch._foreach_copy_(reg.running("start"), self._params(pl_module))
            torch._foreach_zero_(reg.running("omega"))

    def estimate(self, trainer, pl_module):
        reg = pl_module.regularizer
        omega_new = importance(reg.running("omega"), reg.running("start"), self._params(pl_module), self.xi)
        return dict(zip(reg.names, omega_new))
