"""A run stopped mid-stream and resumed from its last stream checkpoint, beside the uninterrupted run: the
pieces that the resume tests of several methods share."""

import pytest
import pytorch_lightning as pl

from clexp.core import checkpoint
from clexp.core.runner import StreamRunner
from clexp.core.validation import validate
from tests.conftest import compose


class Stop(Exception):
    pass


class StopAt(pl.Callback):
    """Raises Stop at the end of the batch that makes `step` optimizer steps of the current fit."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.fit_loop.epoch_loop._batches_that_stepped + 1 >= self.step:
            raise Stop


def stopped_and_resumed(base: list[str], tmp_path, stop_at: int):
    """Runs `base` uninterrupted (tmp_path/full) and stopped by StopAt(stop_at) then resumed (tmp_path/stopped).
    Returns both runs' results, the checkpoint the resume started from, and both folders' last checkpoints."""
    cfg = compose(base)
    full = StreamRunner(cfg, tmp_path / "full", parts=validate(cfg)).run()
    cfg = compose(base)
    with pytest.raises(Stop):
        StreamRunner(cfg, tmp_path / "stopped", parts=validate(cfg), extra_callbacks=[StopAt(stop_at)]).run()
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "stopped"))
    cfg = compose(base)
    resumed = StreamRunner(cfg, tmp_path / "stopped", parts=validate(cfg), resume=state).run()
    last_full = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "full"))
    last_resumed = checkpoint.load(checkpoint.last_checkpoint(tmp_path / "stopped"))
    return full, resumed, state, last_full, last_resumed
