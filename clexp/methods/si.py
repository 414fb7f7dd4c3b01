"""Synaptic Intelligence (Zenke et al. 2017): c·Σ Ω (θ − θ*)², Ω accumulated from the path integral.

After every optimizer step: ω_k += −g_k · Δθ_k, with g the gradient of the UNREGULARIZED loss at the
pre-step parameters and Δθ the update the optimizer actually made (any optimizer). No second
backward: g is read right after the backward of the task loss, before the penalty's analytic
gradient 2·c·Ω(θ − θ*) is added to it. At the boundary: Ω += ω / ((θ_end − θ_start)² + ξ).

The running sums live in the penalty's buffers rather than in the callback: they are then saved in
stream checkpoints (resume mid-experience) and travel with the module like the importances.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.argspec import check_args
from clexp.methods.base import ImportanceCallback
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


class PathIntegral(ImportanceCallback):
    """ω after every optimizer step, consolidated at the boundary with ξ (sums in the penalty's buffers)."""

    ARGS = {"xi": ("number", {"low": 0, "low_open": True})}

    def __init__(self, xi: float = 0.1, plot: bool = True):
        check_args(PathIntegral.ARGS, xi=xi)
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
        from clexp.module import loss_scale

        grads = pl_module.regularizer.running("grad")
        for g, p in zip(grads, pl_module.regularizer._params(pl_module.model)):
            if p.grad is None:
                g.zero_()
            else:
                g.copy_(p.grad)
        scale = loss_scale(trainer, pl_module.device)
        if scale is not None:  # mixed precision: the backward's gradients are still scaled
            torch._foreach_div_(grads, scale)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        reg = pl_module.regularizer
        accumulate(reg.running("omega"), reg.running("prev"), self._params(pl_module), reg.running("grad"))

    def estimate(self, trainer, pl_module):
        reg = pl_module.regularizer
        omega_new = importance(reg.running("omega"), reg.running("start"), self._params(pl_module), self.xi)
        return dict(zip(reg.names, omega_new))
