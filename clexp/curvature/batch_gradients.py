"""Squared or absolute mini-batch gradients: what most public code computes for the Fisher (the
"batch" variants, fisher.py) and MAS ("batch_mean", sensitivity.py), kept for comparison with the
per-sample estimators of the engine (engine.py).

For M consecutive mini-batches of B inputs (the last may be smaller), with o(x_n) a per-sample
objective (log p(y_n|x_n), or ‖f(x_n)‖²), each mini-batch adds

    SQUARE  (∇θ (1/|m|) Σ_{n∈m} o(x_n))²        ABS  |∇θ (1/|m|) Σ_{n∈m} o(x_n)|

to the sums; the mini-batch gradient is summed over pieces of at most `chunk_size` inputs, so
memory does not grow with B. Returns M, the count the sums are divided by.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from clexp.curvature.rules import SQUARE


def add_batch_gradients(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    batch_size: int,
    objective: Callable[[torch.Tensor, int, int, int], torch.Tensor],
    stat: str,
    sums: dict[str, torch.Tensor],
    chunk_size: int,
) -> float:
    """Add each mini-batch's squared (SQUARE) or absolute (ABS) mean gradient into `sums`.

    `objective(outputs, start, stop, batch)` is (1/batch) Σ_n o(x_n) over inputs[start:stop] given
    the model's outputs on them (start, stop index `inputs`, e.g. to slice labels; batch = |m|, the
    size of the mini-batch they belong to). Returns the number of mini-batches M."""
    for first in range(0, len(inputs), batch_size):
        x = inputs[first : first + batch_size]
        total = None
        for start in range(0, len(x), chunk_size):
            with torch.enable_grad():
                a, b = first + start, first + min(start + chunk_size, len(x))
                value = objective(model(x[start : start + chunk_size]), a, b, len(x))
                grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
            if total is None:
                total = [None if g is None else g.detach() for g in grads]
            else:
                total = [t if g is None else (g.detach() if t is None else t.add_(g)) for t, g in zip(total, grads)]
        for n, g in zip(params, total):
            if g is not None:
                if stat == SQUARE:
                    sums[n].addcmul_(g, g)
                else:
                    sums[n].add_(g.abs())
    return float(-(-len(inputs) // batch_size))
