"""Stream checkpoints inside an experience, every `trainer.checkpoint_every_n_steps` optimizer steps.

With the weights, penalty buffers (SI sums included), accuracy matrix and RNG state they save the
optimizer state and where the batch order stands, so that a resumed run takes exactly the same
steps as an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import time

import pytorch_lightning as pl

from clexp import checkpoint

# testing aid: SIGKILL this process after this many optimizer steps of the whole stream
KILL_ENV = "CLEXP_KILL_AT_STEP"


class StreamCheckpoint(pl.Callback):
    def __init__(self, runner, every_n_steps: int | None):
        self.runner = runner
        self.every = every_n_steps
        self.kill_at = int(os.environ[KILL_ENV]) if os.environ.get(KILL_ENV) else None

    def begin(self, trainer, loader, experience: int, done_steps: int, point: dict | None) -> None:
        """Called by the runner before each experience's `fit`."""
        self.loader, self.experience, self.done_steps, self.point = loader, experience, done_steps, point
        self.done_epochs = point["epoch"] if point else 0
        self.t0 = time.perf_counter() - (point["seconds"] if point else 0.0)

    def on_train_start(self, trainer, pl_module):
        if self.point is not None:
            for opt, saved in zip(trainer.optimizers, self.point["optimizers"]):
                opt.load_state_dict(saved)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = self.done_steps + trainer.global_step  # optimizer steps in this experience
        if self.every and step % self.every == 0 and trainer.is_global_zero:
            self.runner.guard.check(trainer, pl_module, step)
            self.save(trainer, step, batch_idx)
        if self.kill_at is not None and self.runner.steps + step >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def save(self, trainer, step: int, batch_idx: int) -> None:
        # a resumed first pass skipped batches: count the batch position within the whole pass
        skipped = self.loader.skip_at_start if trainer.current_epoch == 0 else 0
        consumed = skipped + batch_idx + 1
        epoch = self.done_epochs + trainer.current_epoch
        loader_state = {"passes": self.loader.passes - 1, "skip": consumed}
        if consumed >= self.loader.batches_per_pass:  # the pass is complete: resume on a fresh one
            epoch, loader_state = epoch + 1, {"passes": self.loader.passes, "skip": 0}
        state = self.runner.state(self.experience, finished=False)
        state["point"] = {
            "step": step,
            "epoch": epoch,
            "loader": loader_state,
            "optimizers": [opt.state_dict() for opt in trainer.optimizers],
            "seconds": time.perf_counter() - self.t0,
        }
        checkpoint.save_atomic(state, checkpoint.last_checkpoint(self.runner.run_dir))
