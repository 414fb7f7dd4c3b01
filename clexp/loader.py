"""Batches drawn from tensors that already live on the training device.

No per-sample `__getitem__`, no worker processes, no PIL: one index operation per batch. Each pass
reshuffles with a generator seeded from (seed, pass number), so a resumed run that restores
`passes` draws the same batches as an uninterrupted one. Under DDP each rank takes its own shard
(padded by wrap-around so that every rank runs the same number of steps).
"""

from __future__ import annotations

import math

import torch


class TensorLoader:
    """Iterable of tuples of tensor batches (e.g. `(x, y, t)`), the same length on every rank."""

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("TensorLoader: tensors differ in length")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.passes = 0  # how many times iteration started: part of the resumable state
        self.skip = 0  # batches to skip at the start of the next pass (a resumed, half-done pass)
        self.skip_at_start = 0  # what the current pass skipped

    @property
    def n(self) -> int:
        return len(self.tensors[0])

    @property
    def per_rank(self) -> int:
        return math.ceil(self.n / self.world_size)

    @property
    def batches_per_pass(self) -> int:
        m = self.per_rank
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def __len__(self) -> int:
        return self.batches_per_pass  # a resumed pass yields fewer: it ends early

    def to(self, device: torch.device | str) -> TensorLoader:
        self.tensors = tuple(t.to(device) for t in self.tensors)
        return self

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.passes)
            idx = torch.randperm(self.n, generator=g)
        else:
            idx = torch.arange(self.n)
        if self.world_size > 1:
            total = self.per_rank * self.world_size
            if total > self.n:
                idx = torch.cat([idx, idx[: total - self.n]])
            idx = idx[self.rank :: self.world_size]
        return idx.to(self.tensors[0].device)

    def __iter__(self):
        idx = self._indices()
        self.passes += 1
        self.skip_at_start, self.skip = self.skip, 0
        for b in range(self.skip_at_start, self.batches_per_pass):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield tuple(t[sel] for t in self.tensors)

    def state_dict(self) -> dict:
        return {"passes": self.passes, "skip": self.skip}

    def load_state_dict(self, state: dict) -> None:
        self.passes = int(state["passes"])
        self.skip = int(state.get("skip", 0))
