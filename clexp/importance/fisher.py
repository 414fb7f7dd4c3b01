"""The diagonal Fisher information, per sample and exact (DESIGN.md §3), without a loop over samples.

    exact      F = 1/N Σ_n Σ_c p(c|x_n) (∇θ log p(c|x_n))²        expectation over the model's classes
    sampled    F = 1/(N·S) Σ_n Σ_s (∇θ log p(ŷ_ns|x_n))²,  ŷ ~ p(·|x_n)   the "true" Fisher, Monte Carlo
    empirical  F = 1/N Σ_n (∇θ log p(y_n|x_n))²                dataset labels
    batch      F = 1/M Σ_m (∇θ mean_{n∈chunk m} log p(y_n|x_n))²   what most public code computes;
                                                               for comparison only

In logit space the Hessian of the cross-entropy is diag(p) − ppᵀ = Σ_c s_c s_cᵀ with
s_c = √p_c (e_c − p): the exact Fisher backpropagates the C vectors s_c in one batched backward.
For cross-entropy it equals the diagonal of the generalised Gauss-Newton matrix.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from clexp.importance.per_sample import SQUARE, accumulate_chunk

FISHER_VARIANTS = ("exact", "sampled", "empirical", "batch")


class eval_mode:
    """Context: the model in eval mode (dropout off, BatchNorm frozen); each module's mode restored."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes.items():
            m.training = mode


def masked_log_softmax(logits: torch.Tensor, output_mask: torch.Tensor | None) -> torch.Tensor:
    if output_mask is not None:
        logits = logits.masked_fill(~output_mask.to(logits.device), float("-inf"))
    return torch.log_softmax(logits, dim=1)


def _check(variant: str, samples: int, targets) -> None:
    if variant not in FISHER_VARIANTS:
        raise ValueError(f"Fisher variant {variant!r} does not exist: allowed are {', '.join(FISHER_VARIANTS)}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples={samples!r}: must be an integer >= 1")
    if variant in ("empirical", "batch") and targets is None:
        raise ValueError(f"the {variant} Fisher needs targets (the dataset labels)")


def _vector_maker(variant, samples, output_mask, targets_chunk, generator):
    """logits → K × N × C logit-space vectors whose per-sample backprop gives the wanted squares."""

    def make(logits):
        work = logits if logits.dtype == torch.float64 else logits.float()  # half precision: in float32
        p = masked_log_softmax(work, output_mask).exp()
        N, C = p.shape
        if variant == "exact":
            classes = range(C) if output_mask is None else output_mask.nonzero().flatten().tolist()
            eye = torch.eye(C, device=p.device, dtype=p.dtype)
            v = torch.stack([p[:, c : c + 1].sqrt() * (eye[c] - p) for c in classes])
        elif variant == "sampled":
            draws = torch.multinomial(p, samples, replacement=True, generator=generator)  # N × S
            onehot = torch.nn.functional.one_hot(draws.t(), C).to(p.dtype)  # S × N × C
            v = (onehot - p) / samples**0.5
        else:  # empirical
            v = (torch.nn.functional.one_hot(targets_chunk, C).to(p.dtype) - p).unsqueeze(0)
        return v.to(logits.dtype)

    return make


def _all_reduce(sums: dict[str, torch.Tensor], count: float, device) -> float:
    """Sum the statistics and the sample count over ranks (each rank passed its own shard)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return count
    for v in sums.values():
        dist.all_reduce(v)
    n = torch.tensor([count], dtype=torch.float64, device=device)
    dist.all_reduce(n)
    return float(n.item())


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
    """The diagonal Fisher of `model` (logits over C outputs) on `inputs`, keyed by parameter name.

    A mean over the inputs (`batch`: over chunks). `output_mask` (bool, C) restricts the predictive
    distribution to an experience's outputs (task-IL). Runs in eval mode and restores the model's
    modes; leaves no hooks and no `.grad`. Under DDP (`reduce`) the sums over the ranks' shards are
    all-reduced, giving the Fisher of the whole data.
    """
    _check(variant, samples, targets)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0.0
    with eval_mode(model):
        for start in range(0, len(inputs), chunk_size):
            x = inputs[start : start + chunk_size]
            y = None if targets is None else targets[start : start + chunk_size]
            if variant == "batch":
                with torch.enable_grad():
                    logp = masked_log_softmax(model(x), output_mask)
                    mean_ll = logp.gather(1, y.view(-1, 1)).mean()
                    grads = torch.autograd.grad(mean_ll, list(params.values()), allow_unused=True)
                for (n, _), g in zip(params.items(), grads):
                    if g is not None:
                        sums[n] += g.detach().pow(2)
                count += 1
            else:
                accumulate_chunk(model, x, _vector_maker(variant, samples, output_mask, y, generator), SQUARE, sums)
                count += len(x)
    if reduce:
        count = _all_reduce(sums, count, inputs.device)
    return {n: v / max(count, 1.0) for n, v in sums.items()}
