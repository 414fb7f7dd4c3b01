"""SI's path integral (Zenke et al. 2017), as fused tensor operations over all parameters.

After every optimizer step: ω_k += −g_k · Δθ_k, with g the gradient of the UNREGULARIZED loss at the
pre-step parameters and Δθ the update the optimizer actually made (any optimizer). No second
backward: g is read right after the backward of the task loss, before the penalty's analytic
gradient 2·c·Ω(θ − θ*) is added to it.
At the boundary: Ω_new = ω / ((θ_end − θ_start)² + ξ).
"""

from __future__ import annotations

import torch


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
