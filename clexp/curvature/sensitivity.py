"""MAS importance (Aljundi et al. 2018): Ω_k = 1/N Σ_n |∂ ‖f(x_n)‖²₂ / ∂θ_k|, per sample.

∂‖f‖²/∂f = 2f: one logit-space vector per input through the same engine as the Fisher
(engine.py; Σ_n |g_n| = |δ|ᵀ|a| for a Linear layer). Not |batch-mean gradient| — unless asked:

    per_sample  Ω = 1/N Σ_n |∇θ ‖f(x_n)‖²|                  the paper's definition (default)
    batch_mean  Ω = 1/M Σ_m |∇θ mean_{n∈batch m} ‖f(x_n)‖²|   what public code computes (Hsu et al. 2018),
                                                           M mini-batches of B = batch_size inputs;
                                                           compatibility only: |Σ g| ≤ Σ |g|, so it is
                                                           at most the per-sample Ω (equal for B = 1)

`output_mean`: ‖f‖² replaced by the mean of f_c² over the allowed outputs (Hsu et al.'s code,
`pred.pow(2).mean()`): Ω divided by the number of allowed outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.curvature.batch_gradients import add_batch_gradients
from clexp.curvature.engine import ABS, accumulate, eval_mode, finish, zero_sums

MAS_VARIANTS = ("per_sample", "batch_mean")


def _masked(logits: torch.Tensor, output_mask: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """The logits with the outputs outside `output_mask` zeroed, and the number of allowed outputs."""
    if output_mask is None:
        return logits, logits.shape[1]
    mask = output_mask.to(logits.device)
    return logits * mask.to(logits.dtype), int(mask.sum())


def mas_importance(
    model: nn.Module,
    inputs: torch.Tensor,
    chunk_size: int = 256,
    output_mask: torch.Tensor | None = None,
    reduce: bool = True,
    variant: str = "per_sample",
    batch_size: int | None = None,
    output_mean: bool = False,
) -> dict[str, torch.Tensor]:
    """Mean per-sample |∂‖f(x)‖²/∂θ| over `inputs`, f the logits (outputs outside `output_mask` left out);
    `variant="batch_mean"`: the mean over the M = ⌈N/B⌉ consecutive mini-batches of `batch_size` = B
    inputs of |∂ mean_batch ‖f‖²/∂θ|. `output_mean`: the mean over the allowed outputs instead of the sum.

    Eval mode, modes restored, no hooks or `.grad` left; under DDP with `reduce` the ranks' sums and
    counts are all-reduced.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: must be >= 1")
    if variant not in MAS_VARIANTS:
        raise ValueError(f"MAS variant {variant!r} does not exist: allowed are {', '.join(MAS_VARIANTS)}")
    if variant == "batch_mean" and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                    or batch_size < 1):
        raise ValueError(f"MAS batch_mean needs batch_size, the mini-batch size B (the training batch size), "
                         f"an integer >= 1; got {batch_size!r}")
    sums = zero_sums(model)

    def vectors(logits, start, stop):
        f, m = _masked(logits, output_mask)
        return (2.0 / (m if output_mean else 1) * f).unsqueeze(0)

    with eval_mode(model):
        if variant == "batch_mean":
            from clexp.models.freeze import trainable_parameters

            def objective(logits, start, stop, batch):
                f, m = _masked(logits, output_mask)
                return f.pow(2).sum() / (batch * (m if output_mean else 1))

            count = add_batch_gradients(model, trainable_parameters(model), inputs, batch_size, objective, ABS, sums,
                                        chunk_size)
        else:
            accumulate(model, inputs, vectors, ABS, sums, chunk_size)
            count = float(len(inputs))
    return finish(model, sums, count, reduce)
