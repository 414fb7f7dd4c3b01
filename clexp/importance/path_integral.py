"""SI's path integral (Zenke et al. 2017), as fused tensor operations over all parameters.

After every optimizer step: ω_k += −g_k · Δθ_k, with g the gradient of the UNREGULARIZED loss at the
pre-step parameters and Δθ the update the optimizer actually made (any optimizer). No second
backward: g = g_total − ∇penalty, with ∇penalty = 2·c·Ω(θ − θ*) analytic.
At the boundary: Ω_new = ω / ((θ_end − θ_start)² + ξ).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def accumulate(omega, prev, params, total_grads, penalty_grads) -> None:
    """ω += −(g_total − ∇penalty)·(θ − θ_prev); then θ_prev ← θ. All lists aligned by parameter."""
    delta = torch._foreach_sub(params, prev)
    g = torch._foreach_sub(total_grads, penalty_grads) if penalty_grads is not None else total_grads
    torch._foreach_mul_(delta, g)
    torch._foreach_sub_(omega, delta)
    torch._foreach_copy_(prev, params)


@torch.no_grad()
def importance(omega, start, params, xi: float) -> list[torch.Tensor]:
    """Ω_new = ω / ((θ − θ_start)² + ξ)."""
    drift = torch._foreach_sub(params, start)
    torch._foreach_mul_(drift, drift)
    torch._foreach_add_(drift, xi)
    return torch._foreach_div(omega, drift)
