"""Stream checkpoints inside an experience, every `trainer.checkpoint_every_n_steps` optimizer steps.

With what `state_fn` returns (weights, penalty buffers — SI sums included —, accuracy matrix, RNG)
they save the optimizer state and where the batch order stands, so that a resumed run takes
exactly the same steps as an uninterrupted one. The callback knows nothing of the runner: it is
given the file, a function returning the state to save, and the step count before this experience.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl

from clexp.core import checkpoint
from clexp.core.callbacks.finite_guard import check_finite

# testing aid: SIGKILL this process after this many optimizer steps of the whole stream
KILL_ENV = "CLEXP_KILL_AT_STEP"


class StreamCheckpoint(pl.Callback):
    def __init__(self, path: Path, state_fn: Callable[[int, bool], dict], every_n_steps: int | None = None):
        self.path, self.state_fn, self.every = Path(path), state_fn, every_n_steps
        self.kill_at = int(os.environ[KILL_ENV]) if os.environ.get(KILL_ENV) else None

    def begin(self, loader, experience: int, steps_before: int, point: dict | None,
              carried: list[dict] | None = None) -> None:
        """Before experience `experience`'s `fit`: its loader, the stream's optimizer steps before it,
        the mid-experience point it resumes from (or None), and the optimizer state a task-free stream
        carries over from the previous experience (or None: a fresh optimizer)."""
        self.loader, self.experience, self.steps_before, self.point = loader, experience, steps_before, point
        self.carried = carried
        self.done_steps = point["step"] if point else 0
        self.done_epochs = point["epoch"] if point else 0
        self.t0 = time.perf_counter() - (point["seconds"] if point else 0.0)

    def save_boundary(self, experience: int) -> None:
        """After experience `experience` (atomic: a kill never leaves a torn file)."""
        checkpoint.save_atomic(self.state_fn(experience, True), self.path)

    def on_train_start(self, trainer, pl_module):
        saved_states = self.point["optimizers"] if self.point is not None else getattr(self, "carried", None)
        for opt, saved in zip(trainer.optimizers, saved_states or []):
            opt.load_state_dict(saved)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = self.done_steps + trainer.global_step  # optimizer steps in this experience
        if self.every and step % self.every == 0 and trainer.is_global_zero:
            check_finite(pl_module, step)  # never save a non-finite state over the last good one
            self.save(trainer, step, batch_idx)
        if self.kill_at is not None and self.steps_before + step >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def save(self, trainer, step: int, batch_idx: int) -> None:
        # a resumed first pass skipped batches: count the batch position within the whole pass
        skipped = self.loader.skip_at_start if trainer.current_epoch == 0 else 0
        consumed = skipped + batch_idx + 1
        epoch = self.done_epochs + trainer.current_epoch
        loader_state = {"passes": self.loader.passes - 1, "skip": consumed}
        if consumed >= self.loader.batches_per_pass:  # the pass is complete: resume on a fresh one
            epoch, loader_state = epoch + 1, {"passes": self.loader.passes, "skip": 0}
        state = self.state_fn(self.experience, False)
        state["point"] = {
            "step": step,
            "epoch": epoch,
            "loader": loader_state,
            "optimizers": [opt.state_dict() for opt in trainer.optimizers],
            "seconds": time.perf_counter() - self.t0,
        }
        checkpoint.save_atomic(state, self.path)
