"""The stream's optimizer-step count: the one place that reads and sets Lightning's private counter
(`trainer.fit_loop.epoch_loop._batches_that_stepped`).

Lightning counts the steps of one `fit`; the runner sets the counter at the start of every experience to
the steps of the stream so far, so the logged x axis, the seeded draws and the task-free consolidation
points are continuous across experiences (and the same after a resume). Should Lightning rename the
counter, only this file changes."""

from __future__ import annotations


def stream_steps(trainer) -> int:
    """Optimizer steps of the whole stream before the current step (inside a training step or its hooks
    before `on_train_batch_end`'s increment)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def set_stream_steps(trainer, steps: int) -> None:
    """Continue the stream's step count at `steps` in this experience's fit."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = steps
