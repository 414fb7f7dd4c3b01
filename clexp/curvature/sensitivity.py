"""MAS importance (Aljundi et al. 2018): Ω_k = 1/N Σ_n |∂ ‖f(x_n)‖²₂ / ∂θ_k|, per sample.

∂‖f‖²/∂f = 2f: one logit-space vector per input through the same engine as the Fisher
(per_sample.py; Σ_n |g_n| = |δ|ᵀ|a| for a Linear layer). Not |batch-mean gradient| — unless asked:

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

from clexp.curvature.per_sample import ABS, accumulate, eval_mode, finish, zero_sums

MAS_VARIANTS = ("per_sample", "batch_mean")


def _masked(logits: torch.Tensor, output_mask: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """The logits with the outputs outside `output_mask` zeroed, and the number of allowed outputs."""
    if output_mask is None:
        return logits, logits.shape[1]
    mask = output_mask.to(logits.device)
    return logits * mask.to(logits.dtype), int(mask.sum())


def _batch_mean(model, params: dict, x, batch: int, output_mask, output_mean: bool, chunk_size: int, sums) -> None:
    """Add |∇θ mean_{n∈batch} ‖f(x_n)‖²| of one mini-batch; its gradient summed over pieces (memory)."""
    total = None
    for start in range(0, len(x), chunk_size):
        with torch.enable_grad():
            f, m = _masked(model(x[start : start + chunk_size]), output_mask)
            loss = f.pow(2).sum() / (batch * (m if output_mean else 1))
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        if total is None:
            total = [None if g is None else g.detach() for g in grads]
        else:
            total = [t if g is None else (g.detach() if t is None else t.add_(g)) for t, g in zip(total, grads)]
    for n, g in zip(params, total):
        if g is not None:
            sums[n].add_(g.abs())


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

            params = trainable_parameters(model)
            for start in range(0, len(inputs), batch_size):
                x = inputs[start : start + batch_size]
                _batch_mean(model, params, x, len(x), output_mask, output_mean, chunk_size, sums)
            count = float(-(-len(inputs) // batch_size))
        else:
            accumulate(model, inputs, vectors, ABS, sums, chunk_size)
            count = float(len(inputs))
    return finish(model, sums, count, reduce)
