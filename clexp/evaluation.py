"""Accuracy on every experience's test set at once: one batched pass, counts reduced over ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist


@torch.no_grad()
def accuracy_per_experience(
    module: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    n_experiences: int,
    batch_size: int = 1024,
) -> list[float]:
    """Accuracy of `module(x, t)` per task id, in eval mode (the mode is restored).

    Under an initialised process group each rank evaluates its own slice and the counts are
    all-reduced, so every test sample is evaluated exactly once.
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    correct = torch.zeros(n_experiences, dtype=torch.float64, device=device)
    total = torch.zeros(n_experiences, dtype=torch.float64, device=device)
    idx = torch.arange(rank, len(y), world)
    for chunk in idx.split(batch_size):
        xb, yb, tb = (a[chunk.to(a.device)].to(device, non_blocking=True) for a in (x, y, t))
        hit = (module(xb, tb).argmax(dim=1) == yb).double()
        correct.index_add_(0, tb, hit)
        total.index_add_(0, tb, torch.ones_like(hit))
    if world > 1:
        both = torch.stack([correct, total])
        dist.all_reduce(both)
        correct, total = both[0], both[1]
    module.train(was_training)
    return (correct / total.clamp_min(1)).tolist()
