"""Cross-process sums for the curvature estimators: each rank passes its shard of the data, the sums
(and the counts) are all-reduced, so every rank ends with the statistic of the whole data.
A no-op in a single process; no Lightning needed, only `torch.distributed`."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 when `torch.distributed` is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_sums(sums: dict[str, torch.Tensor], count: float) -> float:
    """Sum every tensor of `sums` in place over the ranks; return the summed `count`."""
    if world_size() == 1:
        return count
    device = next(iter(sums.values())).device if sums else torch.device("cpu")
    for v in sums.values():
        dist.all_reduce(v)
    n = torch.tensor([count], dtype=torch.float64, device=device)
    dist.all_reduce(n)
    return float(n.item())
