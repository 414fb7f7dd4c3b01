"""The diagonal Fisher information, per sample and exact, without a loop over samples (docs/design.md,
section 3, the math).

    exact      F = 1/N Σ_n Σ_c p(c|x_n) (∇θ log p(c|x_n))²        expectation over the model's classes
    sampled    F = 1/(N·S) Σ_n Σ_s (∇θ log p(ŷ_ns|x_n))²,  ŷ ~ p(·|x_n)   the "true" Fisher, Monte Carlo
    empirical  F = 1/N Σ_n (∇θ log p(y_n|x_n))²                dataset labels
    batch      F = 1/M Σ_m (∇θ mean_{n∈batch m} log p(y_n|x_n))²   what most public code computes,
                                                               M mini-batches of B = batch_size inputs;
                                                               for comparison only (≈ 1/B of empirical
                                                               when per-sample gradients are uncorrelated)
    predicted  F = 1/N Σ_n (∇θ log p(ŷ_n|x_n))²,  ŷ_n = argmax_c p(c|x_n)   the model's most likely label
                                                               (van de Ven & Tolias 2019's and Hsu et al.
                                                               2018's EWC code: batch size 1); compatibility
    batch_predicted  F = 1/M Σ_m (∇θ mean_{n∈batch m} log p(ŷ_n|x_n))²   the batch Fisher with the
                                                               argmax labels; compatibility

Exactly, for M mini-batches of B inputs each (B divides N), g_n the per-sample gradient:
    B · F_batch = F_empirical + 1/(M·B) Σ_m Σ_{n≠n' ∈ m} g_n g_n'
so B·F_batch equals the empirical Fisher up to the cross terms of the gradients within a mini-batch
(zero for B = 1, small when they are uncorrelated, large when they agree in sign: an unconverged
model). The same holds between batch_predicted and predicted.

∇_z log p(c|x) = e_c − p, so each variant is Σ_k (per-sample gradient of z·v_k)² for logit-space
vectors v_k (engine.py). exact: the cross-entropy Hessian diag(p) − ppᵀ = Σ_c s_c s_cᵀ with
s_c = √p_c (e_c − p); since Σ_c √p_c s_c = 0 it has rank m − 1 (m allowed classes) and
t_c = s_c − √p_c/(1 + √p_m) s_m, c < m, factor it exactly with one vector fewer (one vector for a
two-class task). sampled: S draws with counts n_c give the same sum as vectors √(n_c/S)(e_c − p), so
at most min(S, m) backward passes. For cross-entropy the exact Fisher is the diagonal of the GGN.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.curvature.batch_gradients import add_batch_gradients
from clexp.curvature.engine import SQUARE, accumulate, eval_mode, finish, zero_sums

FISHER_VARIANTS = ("exact", "sampled", "empirical", "batch", "predicted", "batch_predicted")
BATCH_VARIANTS = ("batch", "batch_predicted")  # squared mini-batch gradients: need the batch size B
LABELLED = ("empirical", "batch")  # the dataset labels


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
    if variant in LABELLED:
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


def logit_vectors(logits: torch.Tensor, variant: str, samples: int = 1, output_mask: torch.Tensor | None = None,
                  targets: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """K × N × C logit-space vectors v_k whose outer products sum to the variant's curvature in logit
    space, Σ_k v_k v_kᵀ: the cross-entropy Hessian diag(p) − ppᵀ (exact, m − 1 vectors t_c), its
    Monte-Carlo estimate from `samples` labels drawn from the model (sampled), (e_y − p)(e_y − p)ᵀ
    for the dataset labels `targets` (empirical). The one place where these vectors are made: the
    diagonal Fisher squares the per-sample gradients of z·v_k, KFAC's G sums δ_k δ_kᵀ over them."""
    work = logits if logits.dtype == torch.float64 else logits.float()  # half precision: in float32
    p = masked_log_softmax(work, output_mask).exp()
    C = p.shape[1]
    allowed = torch.arange(C, device=p.device) if output_mask is None \
        else output_mask.to(p.device).nonzero().flatten()
    if variant == "exact":
        v = _exact(p, allowed) if len(allowed) > 1 else p.new_zeros(0, *p.shape)
    elif variant == "sampled":
        v = _sampled(p, allowed, samples, generator)
    elif variant == "empirical":
        v = (torch.nn.functional.one_hot(targets, C).to(p.dtype) - p).unsqueeze(0)
    elif variant == "predicted":  # the model's argmax over the allowed outputs (masked ones have p = 0)
        v = (torch.nn.functional.one_hot(p.argmax(1), C).to(p.dtype) - p).unsqueeze(0)
    else:
        raise ValueError(f"no logit-space vectors for the {variant!r} Fisher")
    return v.to(logits.dtype)


def _vector_maker(variant, samples, output_mask, targets, generator):
    """logits of inputs[start:stop] → their K × N × C vectors (`logit_vectors`)."""

    def make(logits, start, stop):
        y = targets[start:stop] if variant == "empirical" else None
        return logit_vectors(logits, variant, samples, output_mask, y, generator)

    return make


def _log_likelihood(targets, output_mask):
    """The batch variants' objective: (1/B) Σ_n log p(y_n|x_n), `targets` None: the argmax labels ŷ_n."""

    def objective(logits, start, stop, batch):
        logp = masked_log_softmax(logits, output_mask)
        labels = logp.detach().argmax(1) if targets is None else targets[start:stop]
        return logp.gather(1, labels.view(-1, 1)).sum() / batch

    return objective


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
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of `model` (logits N × C) on `inputs`, keyed by trainable parameter name.

    A mean over the inputs; `batch` and `batch_predicted`: over the M = ⌈N/B⌉ consecutive mini-batches
    of `batch_size` = B inputs (required for them: the training batch size, for that is what the public code it mimics
    squares; the last mini-batch may be smaller). `chunk_size` only bounds memory: it never changes
    the result. `output_mask` (bool, C) restricts the predictive distribution to the allowed outputs
    (task-IL). `samples` and `generator` are for `sampled`. Runs in eval mode and restores each
    module's mode; leaves no hooks and no `.grad`; memory grows with `chunk_size`, not with N. With
    `reduce` under DDP (world size > 1), each rank passes its shard and the sums and counts are
    all-reduced: the Fisher of the whole data.
    """
    _check(variant, samples, targets, output_mask)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: must be >= 1")
    if variant in BATCH_VARIANTS and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                      or batch_size < 1):
        raise ValueError(f"the {variant} Fisher needs batch_size, the mini-batch size B (the training batch size), "
                         f"an integer >= 1; got {batch_size!r}")
    from clexp.models.freeze import trainable_parameters

    params = trainable_parameters(model)
    sums = zero_sums(model)
    with eval_mode(model):
        if variant in BATCH_VARIANTS:
            objective = _log_likelihood(targets if variant == "batch" else None, output_mask)
            count = add_batch_gradients(model, params, inputs, batch_size, objective, SQUARE, sums, chunk_size)
        else:
            vectors = _vector_maker(variant, samples, output_mask, targets, generator)
            accumulate(model, inputs, vectors, SQUARE, sums, chunk_size)
            count = float(len(inputs))
    return finish(model, sums, count, reduce)
