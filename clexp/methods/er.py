"""Experience replay (ER) with a reservoir buffer: the reference every regularization paper is measured
against, and combinable with the regularizers (`method=ewc +replay=er`, conf/replay/er.yaml).

Buffer: `buffer_size` samples (input, target, task id) kept by reservoir sampling over the whole stream
(Vitter's algorithm R): the m-th incoming sample (m = 0, 1, ...) fills slot m while the buffer is not full;
afterwards it draws j uniform in {0, ..., m} and replaces slot j when j < buffer_size. Every sample seen so
far is then in the buffer with the same probability buffer_size / (m + 1), whatever the experiences'
boundaries: ER needs none (a task-free stream works unchanged). The draws come from a generator seeded by
`seed`, its state saved in the stream checkpoints with the buffer (a resumed run replays the same samples).

Each training step: a replay batch of `replay_batch_size` samples drawn uniformly without replacement from
the buffer (all of it while it holds fewer) is concatenated to the incoming batch BEFORE the forward, and
the loss is the cross-entropy mean over the concatenation (Mammoth's ER; not the mean of two losses).
The buffer is read before the incoming batch is added (as Mammoth does), so from the second step on even
the first experience replays its own earlier batches. Replayed samples keep their own task ids: in task-IL
each is scored by its own head, or its own experience's output mask. Augmentation (`dataset.augment`)
applies to the whole concatenated batch; the buffer stores the raw incoming samples.

The buffer lives on the training device. Under DDP each rank keeps its own buffer from its shard.
`results.json` reports `memory: {samples, bytes}` (the inputs, targets and task ids held at the end).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from clexp.config.argspec import check_args


@torch.no_grad()
def reservoir_slots(seen: int, n: int, capacity: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the next `n` incoming samples go, given `seen` samples before them: (positions in the batch,
    buffer slots), the last writer per slot only (a later sample of the batch overwrites an earlier one,
    exactly as the one-by-one algorithm). One draw per sample once the buffer is full (none before)."""
    m = torch.arange(seen, seen + n, dtype=torch.float64)
    slots = m.clone()
    full = m >= capacity
    if bool(full.any()):
        u = torch.rand(int(full.sum()), generator=generator, dtype=torch.float64)
        slots[full] = torch.floor(u * (m[full] + 1))
    slots = slots.long()
    keep = slots < capacity
    pos, slots = torch.arange(n)[keep], slots[keep]
    if len(slots) == 0:
        return pos, slots
    last = torch.full((capacity,), -1, dtype=torch.long).scatter_reduce(0, slots, pos, reduce="amax")
    written = torch.nonzero(last >= 0).flatten()
    return last[written], written


class ExperienceReplay(pl.Callback):
    """The reservoir buffer and the replay batch (see the module's docstring).

    The module asks `replay_batch(pl_module, x, y, t)` for the concatenated batch before its forward (the
    runner registers this callback in `ContinualModule.batch_sources`); `on_train_batch_end` adds the
    incoming batch to the reservoir."""

    needs_boundaries = False  # the reservoir runs over the stream: nothing happens at a boundary

    ARGS = {"buffer_size": ("int", {"low": 1}), "replay_batch_size": ("int", {"low": 1}), "seed": ("int", {"low": 0})}

    def __init__(self, buffer_size: int = 200, replay_batch_size: int = 32, seed: int = 0):
        check_args(ExperienceReplay.ARGS, buffer_size=buffer_size, replay_batch_size=replay_batch_size, seed=seed)
        self.buffer_size, self.replay_batch_size, self.seed = buffer_size, replay_batch_size, seed
        self.generator = torch.Generator().manual_seed(int(seed) * 7_919 + 17)
        self.seen = 0  # samples of the stream offered to the reservoir so far
        self.x = self.y = self.t = None  # the buffer (allocated with the first batch: its shape and device)

    @property
    def filled(self) -> int:
        return min(self.seen, self.buffer_size)

    def replay_batch(self, pl_module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
        """The incoming batch with a replay batch from the buffer appended (the batch itself while it is empty)."""
        k = min(self.replay_batch_size, self.filled)
        if k == 0:
            return x, y, t
        pick = torch.randperm(self.filled, generator=self.generator)[:k].to(self.x.device)
        return (torch.cat([x, self.x[pick].to(x.dtype)]), torch.cat([y, self.y[pick]]), torch.cat([t, self.t[pick]]))

    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        """Offer a batch of incoming samples to the reservoir."""
        if self.x is None:
            self.x = torch.zeros((self.buffer_size, *x.shape[1:]), dtype=x.dtype, device=x.device)
            self.y = torch.zeros(self.buffer_size, dtype=y.dtype, device=y.device)
            self.t = torch.zeros(self.buffer_size, dtype=t.dtype, device=t.device)
        pos, slots = reservoir_slots(self.seen, len(y), self.buffer_size, self.generator)
        self.seen += len(y)
        if len(slots):
            pos, slots = pos.to(x.device), slots.to(self.x.device)
            self.x[slots] = x[pos].to(self.x.dtype)
            self.y[slots], self.t[slots] = y[pos], t[pos]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        x, y, t = batch[:3]  # the loader's batch: the incoming samples, not the replayed ones
        self.add(x, y, t)

    # -- the stream checkpoint and results.json ----------------------------------------------------------
    def stream_state(self) -> dict:
        cpu = (lambda a: None if a is None else a[: self.filled].detach().cpu().clone())
        return {"seen": self.seen, "generator": self.generator.get_state(), "x": cpu(self.x), "y": cpu(self.y),
                "t": cpu(self.t)}

    def load_stream_state(self, state: dict) -> None:
        self.seen = int(state["seen"])
        self.generator.set_state(state["generator"])
        if state.get("x") is None:
            self.x = self.y = self.t = None
            return
        n = len(state["y"])
        self.x = torch.zeros((self.buffer_size, *state["x"].shape[1:]), dtype=state["x"].dtype)
        self.y = torch.zeros(self.buffer_size, dtype=state["y"].dtype)
        self.t = torch.zeros(self.buffer_size, dtype=state["t"].dtype)
        self.x[:n], self.y[:n], self.t[:n] = state["x"], state["y"], state["t"]

    def on_train_start(self, trainer, pl_module):
        if self.x is not None and self.x.device != pl_module.device:  # loaded from a checkpoint: onto the device
            self.x, self.y, self.t = (a.to(pl_module.device) for a in (self.x, self.y, self.t))

    def report(self, pl_module) -> dict:
        """What results.json records: the samples the buffer holds and their bytes (inputs, targets, task ids)."""
        n = self.filled
        size = sum(a[:n].numel() * a.element_size() for a in (self.x, self.y, self.t)) if self.x is not None else 0
        per_input = self.x[0].numel() * self.x.element_size() if self.x is not None else 0
        return {"memory": {"method": "er", "samples": n, "bytes": int(size), "buffer_size": self.buffer_size,
                           "bytes_per_input": int(per_input), "seen": self.seen}}
