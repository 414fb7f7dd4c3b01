"""MAS importance (Aljundi et al. 2018): Ω_k = 1/N Σ_n |∂‖f(x_n)‖²₂ / ∂θ_k|, per sample.

∂‖f‖²/∂f = 2f: one logit-space vector per input, through the same hook engine as the Fisher
(Σ_n |g_n| = |δ|ᵀ|a| for a Linear layer). Not |batch-mean gradient|.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.importance.fisher import _all_reduce, eval_mode
from clexp.importance.per_sample import ABS, accumulate_chunk


def mas_importance(
    model: nn.Module,
    inputs: torch.Tensor,
    chunk_size: int = 256,
    output_mask: torch.Tensor | None = None,
    reduce: bool = True,
) -> dict[str, torch.Tensor]:
    """Mean per-sample absolute gradient of the squared L2 norm of the outputs (masked outputs left out)."""
    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}

    def vectors(logits):
        f = logits if output_mask is None else logits * output_mask.to(logits.device, logits.dtype)
        return (2.0 * f).unsqueeze(0)

    with eval_mode(model):
        for start in range(0, len(inputs), chunk_size):
            accumulate_chunk(model, inputs[start : start + chunk_size], vectors, ABS, sums)
    count = float(len(inputs))
    if reduce:
        count = _all_reduce(sums, count, inputs.device)
    return {n: v / max(count, 1.0) for n, v in sums.items()}
