"""MAS importance (Aljundi et al. 2018): Ω_k = 1/N Σ_n |∂‖f(x_n)‖²₂ / ∂θ_k|, per sample.

∂‖f‖²/∂f = 2f: one logit-space vector per input through the same engine as the Fisher
(per_sample.py; Σ_n |g_n| = |δ|ᵀ|a| for a Linear layer). Not |batch-mean gradient|.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.curvature.per_sample import ABS, accumulate, eval_mode, finish, zero_sums


def mas_importance(
    model: nn.Module,
    inputs: torch.Tensor,
    chunk_size: int = 256,
    output_mask: torch.Tensor | None = None,
    reduce: bool = True,
) -> dict[str, torch.Tensor]:
    """Mean per-sample |∂‖f(x)‖²/∂θ| over `inputs`, f the logits (outputs outside `output_mask` left out).

    Eval mode, modes restored, no hooks or `.grad` left; under DDP with `reduce` the ranks' sums and
    counts are all-reduced.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: must be >= 1")
    sums = zero_sums(model)

    def vectors(logits, start, stop):
        f = logits if output_mask is None else logits * output_mask.to(logits.device, logits.dtype)
        return (2.0 * f).unsqueeze(0)

    with eval_mode(model):
        accumulate(model, inputs, vectors, ABS, sums, chunk_size)
    return finish(model, sums, float(len(inputs)), reduce)
