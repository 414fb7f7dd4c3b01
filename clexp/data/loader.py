"""Training batches: from tensors that already live on the training device (`TensorLoader`), or
decoded from image files by worker processes (`StreamingLoader`).

`TensorLoader`: no per-sample `__getitem__`, no worker processes, no PIL: one index operation per
batch. Both loaders draw the same batches in the same order (`pass_order`): each pass reshuffles
with a generator seeded from (seed, pass number), so a resumed run that restores `passes` (and
`skip`, the batches of a half-done pass) draws the same batches as an uninterrupted one. Under DDP
each rank takes its own shard (padded by wrap-around so that every rank runs the same number of
steps): the loaders shard themselves, which is why clexp's Trainer turns Lightning's
DistributedSampler injection off (`use_distributed_sampler=False`): it would replace this seeded,
resumable order.
"""

from __future__ import annotations

import math

import torch


def pass_order(n: int, shuffle: bool, seed: int, passes: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The positions of one pass for this rank: a permutation seeded from (seed, pass number), or
    0..n-1; under DDP padded by wrap-around to a multiple of the world size, then every
    `world_size`-th from `rank`."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + passes)
        idx = torch.randperm(n, generator=g)
    else:
        idx = torch.arange(n)
    if world_size > 1:
        total = math.ceil(n / world_size) * world_size
        if total > n:
            idx = torch.cat([idx, idx[: total - n]])
        idx = idx[rank::world_size]
    return idx


class TensorLoader:
    """Iterable of tuples of tensor batches (e.g. `(x, y, t)`), the same length on every rank."""

    drawn: list[int] | None = None  # the positions yielded, when clexp/core/shard_record.py records them

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
        if not all(isinstance(t, torch.Tensor) for t in tensors):
            raise ValueError("these inputs are streamed from image files (dataset.in_memory=false or auto over "
                             "dataset.memory_budget_gb); this part of clexp needs them in memory: set "
                             "dataset.in_memory=true")
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
        idx = pass_order(self.n, self.shuffle, self.seed, self.passes, self.rank, self.world_size)
        return idx.to(self.tensors[0].device)

    def __iter__(self):
        idx = self._indices()
        self.passes += 1
        self.skip_at_start, self.skip = self.skip, 0
        for b in range(self.skip_at_start, self.batches_per_pass):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            if self.drawn is not None:  # clexp/core/shard_record.py
                self.drawn.extend(sel.tolist())
            yield tuple(t[sel] for t in self.tensors)

    def state_dict(self) -> dict:
        return {"passes": self.passes, "skip": self.skip}

    def load_state_dict(self, state: dict) -> None:
        self.passes = int(state["passes"])
        self.skip = int(state.get("skip", 0))


class StreamingLoader(TensorLoader):
    """The batches of `TensorLoader` — the same positions in the same order, the same resumable state
    (`passes`, `skip`) — with the inputs decoded from image files (`ImageFiles`) in `workers`
    DataLoader worker processes (persistent over the passes of an experience; pinned memory when
    training on a GPU). The other tensors (labels, task ids) are indexed in the workers alike. A file
    that cannot be decoded stops training with a `DataError` naming it."""

    def __init__(self, inputs, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 workers: int | None = None, pin_memory: bool | None = None):
        from clexp.data.images import is_lazy

        if not is_lazy(inputs):
            raise TypeError("StreamingLoader reads ImageFiles; tensors go through TensorLoader")
        if any(len(t) != len(inputs) for t in tensors):
            raise ValueError("StreamingLoader: inputs and tensors differ in length")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.inputs, self.tensors = inputs, tuple(t.cpu() for t in tensors)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.workers = inputs.table.workers if workers is None else int(workers)
        self.pin_memory = inputs.table.pin_memory if pin_memory is None else bool(pin_memory)
        self.passes, self.skip, self.skip_at_start = 0, 0, 0
        self._loader = None
        self._sampler = None

    @property
    def n(self) -> int:
        return len(self.inputs)

    def to(self, device) -> StreamingLoader:
        """Batches leave the workers on the host (pinned when `pin_memory`); Lightning moves them."""
        if torch.device(device).type != "cuda":
            self.pin_memory = False
        return self

    def _dataloader(self):
        if self._loader is None:
            from clexp.data.images import Batches, BatchReader, worker_loader

            self._sampler = Batches()
            self._loader = worker_loader(BatchReader(self.inputs, self.tensors), self._sampler, self.workers,
                                         self.pin_memory, persistent=True)
        return self._loader

    def __iter__(self):
        from clexp.data.images import raise_bad

        idx = pass_order(self.n, self.shuffle, self.seed, self.passes, self.rank, self.world_size)
        self.passes += 1
        self.skip_at_start, self.skip = self.skip, 0
        loader = self._dataloader()
        self._sampler.batches = [idx[b * self.batch_size : (b + 1) * self.batch_size].tolist()
                                 for b in range(self.skip_at_start, self.batches_per_pass)]
        for positions, batch in zip(self._sampler.batches, loader):
            if self.drawn is not None:  # clexp/core/shard_record.py
                self.drawn.extend(positions)
            yield raise_bad(batch)

    def close(self) -> None:
        """Stop the worker processes (the end of the experience)."""
        loader, self._loader = self._loader, None
        it = getattr(loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def __getstate__(self):  # picklable (ddp_spawn): the DataLoader is rebuilt where it runs
        state = dict(self.__dict__)
        state["_loader"], state["_sampler"] = None, None
        return state
