"""The diagonal Fisher information, per sample and exact (DESIGN.md §3), without a loop over samples.

    exact      F = 1/N Σ_n Σ_c p(c|x_n) (∇θ log p(c|x_n))²        expectation over the model's classes
    sampled    F = 1/(N·S) Σ_n Σ_s (∇θ log p(ŷ_ns|x_n))²,  ŷ ~ p(·|x_n)   the "true" Fisher, Monte Carlo
    empirical  F = 1/N Σ_n (∇θ log p(y_n|x_n))²                dataset labels
    batch      F = 1/M Σ_m (∇θ mean_{n∈chunk m} log p(y_n|x_n))²   what most public code computes;
                                                               for comparison only

∇_z log p(c|x) = e_c − p, so each variant is Σ_k (per-sample gradient of z·v_k)² for logit-space
vectors v_k (per_sample.py). exact: the cross-entropy Hessian diag(p) − ppᵀ = Σ_c s_c s_cᵀ with
s_c = √p_c (e_c − p); since Σ_c √p_c s_c = 0 it has rank m − 1 (m allowed classes) and
t_c = s_c − √p_c/(1 + √p_m) s_m, c < m, factor it exactly with one vector fewer (one vector for a
two-class task). sampled: S draws with counts n_c give the same sum as vectors √(n_c/S)(e_c − p), so
at most min(S, m) backward passes. For cross-entropy the exact Fisher is the diagonal of the GGN.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.curvature.per_sample import SQUARE, accumulate, eval_mode, finish, zero_sums

FISHER_VARIANTS = ("exact", "sampled", "empirical", "batch")


def masked_log_softmax(logits: torch.Tensor, output_mask: torch.Tensor | None) -> torch.Tensor:
    """log p over the allowed outputs (masked outputs: −inf, p = 0)."""
    if output_mask is not None:
        logits = logits.masked_fill(~output_mask.to(logits.device), float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def _check(variant: str, samples: int, targets, output_mask) -> None:
    if variant not in FISHER_VARIANTS:
        raise ValueError(f"Fisher variant {variant!r} does not exist: allowed are {', '.join(FISHER_VARIANTS)}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples={samples!r}: must be an integer >= 1")
    if variant in ("empirical", "batch"):
        if targets is None:
            raise ValueError(f"the {variant} Fisher needs targets (the dataset labels)")
        if output_mask is not None and len(targets) and not bool(output_mask.to(targets.device)[targets].all()):
            raise ValueError("some targets are outputs that output_mask excludes: log p(y|x) = -inf")


def _exact(p: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """m − 1 vectors t_c with Σ_c t_c t_cᵀ = diag(p) − ppᵀ (m allowed classes): (m − 1) × N × C."""
    last, rest = allowed[-1], allowed[:-1]
    sq = p.sqrt()
    eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    s = sq.t()[rest].unsqueeze(-1) * (eye[rest].unsqueeze(1) - p)  # K × N × C
    s_last = sq[:, last : last + 1] * (eye[last] - p)  # N × C
    coef = sq.t()[rest] / (1 + sq[:, last])  # K × N
    return s - coef.unsqueeze(-1) * s_last


def _sampled(p: torch.Tensor, allowed: torch.Tensor, samples: int, generator) -> torch.Tensor:
    draws = torch.multinomial(p, samples, replacement=True, generator=generator)  # N × S
    eye = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    if samples <= len(allowed):  # one vector per draw
        return (eye[draws.t()] - p) / samples**0.5
    counts = eye[draws].sum(1)  # N × C
    weights = (counts / samples).sqrt().t()[allowed]  # m × N
    return weights.unsqueeze(-1) * (eye[allowed].unsqueeze(1) - p)


def _vector_maker(variant, samples, output_mask, targets, generator):
    """logits → K × N × C logit-space vectors whose per-sample squared gradients sum to the Fisher."""

    def make(logits, start, stop):
        work = logits if logits.dtype == torch.float64 else logits.float()  # half precision: in float32
        p = masked_log_softmax(work, output_mask).exp()
        C = p.shape[1]
        allowed = torch.arange(C, device=p.device) if output_mask is None \
            else output_mask.to(p.device).nonzero().flatten()
        if variant == "exact":
            v = _exact(p, allowed) if len(allowed) > 1 else p.new_zeros(0, *p.shape)
        elif variant == "sampled":
            v = _sampled(p, allowed, samples, generator)
        else:  # empirical
            v = (torch.nn.functional.one_hot(targets[start:stop], C).to(p.dtype) - p).unsqueeze(0)
        return v.to(logits.dtype)

    return make


def _batch_chunk(model, params: dict, x, y, output_mask, sums) -> None:
    """(∇θ mean_n log p(y_n|x_n))² of one chunk."""
    with torch.enable_grad():
        logp = masked_log_softmax(model(x), output_mask)
        mean_ll = logp.gather(1, y.view(-1, 1)).mean()
        grads = torch.autograd.grad(mean_ll, list(params.values()), allow_unused=True)
    for n, g in zip(params, grads):
        if g is not None:
            sums[n] += g.detach().pow(2)


def diag_fisher(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    variant: str = "exact",
    samples: int = 1,
    chunk_size: int = 256,
    output_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduce: bool = True,
) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of `model` (logits N × C) on `inputs`, keyed by trainable parameter name.

    A mean over the inputs (`batch`: over chunks of `chunk_size`). `output_mask` (bool, C) restricts
    the predictive distribution to the allowed outputs (task-IL). `samples` and `generator` are for
    `sampled`. Runs in eval mode and restores each module's mode; leaves no hooks and no `.grad`;
    memory grows with `chunk_size`, not with N. With `reduce` under DDP (world size > 1), each rank
    passes its shard and the sums and counts are all-reduced: the Fisher of the whole data.
    """
    _check(variant, samples, targets, output_mask)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: must be >= 1")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sums = zero_sums(model)
    with eval_mode(model):
        if variant == "batch":
            for start in range(0, len(inputs), chunk_size):
                _batch_chunk(model, params, inputs[start : start + chunk_size], targets[start : start + chunk_size],
                             output_mask, sums)
            count = float(-(-len(inputs) // chunk_size))
        else:
            vectors = _vector_maker(variant, samples, output_mask, targets, generator)
            accumulate(model, inputs, vectors, SQUARE, sums, chunk_size)
            count = float(len(inputs))
    return finish(model, sums, count, reduce)
