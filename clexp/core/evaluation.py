"""Accuracy on every experience's test set at once: one batched pass, counts reduced over ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist

from clexp.data.images import input_batches


def mask_logits(logits: torch.Tensor, masks: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
    """Task-IL masking: outputs outside each sample's experience become -inf (training and evaluation)."""
    if masks is None:
        return logits
    return logits.masked_fill(~masks[t], float("-inf"))


@torch.no_grad()
def accuracies(
    module: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    n_experiences: int,
    batch_size: int = 1024,
    masks: torch.Tensor | None = None,
) -> tuple[list[float], list[float] | None]:
    """Accuracy of `module(x, t)` per task id, in eval mode (the mode is restored); with `masks`
    (bool, T × outputs) also the task-aware accuracy from the same forward pass: each input's outputs
    masked to its experience's (class-IL runs, read as if the task id were known).

    Under an initialised process group each rank evaluates its own slice and the counts are
    all-reduced, so every test sample is evaluated exactly once. `x` may be `ImageFiles`: its
    batches are decoded by worker processes while the model evaluates the previous one.
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    counts = torch.zeros(3 if masks is not None else 2, n_experiences, dtype=torch.float64, device=device)
    if masks is not None:
        masks = masks.to(device)
    chunks = torch.arange(rank, len(y), world).split(batch_size)
    for chunk, xb in zip(chunks, input_batches(x, chunks, device)):
        yb, tb = (a[chunk.to(a.device)].to(device, non_blocking=True) for a in (y, t))
        logits = module(xb, tb)
        hit = (logits.argmax(dim=1) == yb).double()
        counts[0].index_add_(0, tb, hit)
        counts[1].index_add_(0, tb, torch.ones_like(hit))
        if masks is not None:
            masked = mask_logits(logits, masks, tb)
            counts[2].index_add_(0, tb, (masked.argmax(dim=1) == yb).double())
    if world > 1:
        dist.all_reduce(counts)
    module.train(was_training)
    total = counts[1].clamp_min(1)
    return (counts[0] / total).tolist(), ((counts[2] / total).tolist() if masks is not None else None)


def accuracy_per_experience(
    module: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    n_experiences: int,
    batch_size: int = 1024,
) -> list[float]:
    """Accuracy of `module(x, t)` per task id (see `accuracies`)."""
    return accuracies(module, x, y, t, n_experiences, batch_size)[0]
