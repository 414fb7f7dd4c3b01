"""Keeps the accuracy matrix R: the initial model's accuracies, then one row after each experience."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

from clexp import metrics
from clexp.evaluation import accuracy_per_experience
from clexp.stream import Stream


class AccuracyMatrix(pl.Callback):
    """Evaluates every experience's test set at the end of each experience's training.

    `rows[i][j]` is the accuracy on experience j after training experience i; `baseline[j]` the
    initial model's (for FWT). The summary metrics are logged with step `experience`.
    """

    def __init__(self, stream: Stream, batch_size: int = 1024):
        self.n = len(stream)
        self.batch_size = batch_size
        self._x = torch.cat([e.x_test for e in stream])
        self._y = torch.cat([e.y_test for e in stream])
        self._t = torch.cat([e.t_test for e in stream])
        self.rows: list[list[float]] = []
        self.baseline: list[float] | None = None
        self.eval_seconds: list[float] = []

    def _evaluate(self, pl_module: pl.LightningModule) -> list[float]:
        device = pl_module.device
        if self._x.device != device:
            self._x, self._y, self._t = (a.to(device) for a in (self._x, self._y, self._t))
        return accuracy_per_experience(pl_module, self._x, self._y, self._t, self.n, self.batch_size)

    def on_fit_start(self, trainer, pl_module):
        if self.baseline is None:
            self.baseline = self._evaluate(pl_module)

    def on_train_end(self, trainer, pl_module):
        start = time.perf_counter()
        i = int(pl_module.experience)
        row = self._evaluate(pl_module)
        del self.rows[i:]
        self.rows.append(row)
        self.eval_seconds[i:] = [time.perf_counter() - start]
        if trainer.logger is not None:
            summary = {f"eval/{k}": v for k, v in metrics.summary(self.rows, self.baseline).items() if v is not None}
            accs = {f"eval/acc_exp{j}": row[j] for j in range(self.n)}
            # at the stream's step count (continuous across experiences, as train/loss): one row per experience
            trainer.logger.log_metrics({**accs, **summary, "experience": i},
                                       step=trainer.fit_loop.epoch_loop._batches_that_stepped)

    @property
    def summary(self) -> dict[str, float | None]:
        return metrics.summary(self.rows, self.baseline)

    def state_dict(self) -> dict:
        return {"rows": self.rows, "baseline": self.baseline, "eval_seconds": self.eval_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [list(r) for r in state["rows"]]
        self.baseline = None if state["baseline"] is None else list(state["baseline"])
        self.eval_seconds = list(state.get("eval_seconds", []))
