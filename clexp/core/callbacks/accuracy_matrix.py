"""Keeps the accuracy matrix R: the initial model's accuracies, then one row after each experience —
on the test sets, and on the validation splits when the stream has them (`train.val_fraction`)."""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch

from clexp.core import metrics
from clexp.core.evaluation import accuracies
from clexp.core.step_count import stream_steps
from clexp.data.images import cat_inputs, is_lazy
from clexp.data.stream import Stream


class AccuracyMatrix(pl.Callback):
    """Evaluates every experience's test set (and validation split) at the end of each experience's training.

    `rows[i][j]` is the accuracy on experience j after training experience i; `baseline[j]` the
    initial model's (for FWT); `val_rows` / `val_baseline` the same on the validation splits (None
    when the stream has none). The summary metrics are logged (`eval/*`, `val/*`) with step `experience`.
    A class-IL stream also gets `task_aware_rows`: the same test accuracies with each experience's
    outputs masked to its own classes (as if the task id were given), from the same forward pass.
    A stream whose experiences share one test set (`Stream.shared_test`) evaluates it once per row.
    """

    def __init__(self, stream: Stream, batch_size: int = 1024):
        self.n = len(stream)
        self.batch_size = batch_size
        self.shared = stream.shared_test
        if self.shared:  # one test set for every experience: once, as experience 0's
            first = stream[0]
            self._sets = {"eval": [first.x_test, first.y_test, torch.zeros_like(first.y_test)]}
        else:
            self._sets = {"eval": [cat_inputs([getattr(e, f"{a}_test") for e in stream]) for a in "xyt"]}
        if stream.has_validation:
            self._sets["val"] = [cat_inputs([getattr(e, f"{a}_val") for e in stream]) for a in "xyt"]
        self.rows: list[list[float]] = []
        self.baseline: list[float] | None = None
        self.val_rows: list[list[float]] | None = [] if "val" in self._sets else None
        self.val_baseline: list[float] | None = None
        self.eval_seconds: list[float] = []
        self._masks = None
        if stream.incremental == "class" and not self.shared:
            self._masks = torch.zeros(self.n, stream.n_outputs, dtype=torch.bool)
            for e in stream:
                self._masks[e.index, e.output_classes] = True
        self.task_aware_rows: list[list[float]] | None = [] if self._masks is not None else None

    def _evaluate(self, pl_module: pl.LightningModule, which: str = "eval") -> list[float]:
        device = pl_module.device
        x, y, t = self._sets[which]
        if y.device != device:  # inputs read from files stay files: their batches are decoded on the way
            self._sets[which] = x, y, t = [a if is_lazy(a) else a.to(device) for a in (x, y, t)]
        masks = self._masks if which == "eval" and self.task_aware_rows is not None else None
        if which == "eval" and self.shared:
            plain, _ = accuracies(pl_module, x, y, t, 1, self.batch_size)
            self._last_masked = None
            return plain * self.n
        plain, masked = accuracies(pl_module, x, y, t, self.n, self.batch_size, masks)
        self._last_masked = masked
        return plain

    def on_fit_start(self, trainer, pl_module):
        if self.baseline is None:
            self.baseline = self._evaluate(pl_module)
        if self.val_rows is not None and self.val_baseline is None:
            self.val_baseline = self._evaluate(pl_module, "val")

    def on_train_end(self, trainer, pl_module):
        start = time.perf_counter()
        i = int(pl_module.experience)
        row = self._evaluate(pl_module)
        del self.rows[i:]
        self.rows.append(row)
        if self.task_aware_rows is not None:
            del self.task_aware_rows[i:]
            self.task_aware_rows.append(self._last_masked)
        logged = self._logged("eval", self.rows, self.baseline)
        if self.val_rows is not None:
            del self.val_rows[i:]
            self.val_rows.append(self._evaluate(pl_module, "val"))
            logged |= self._logged("val", self.val_rows, self.val_baseline)
        self.eval_seconds[i:] = [time.perf_counter() - start]
        if trainer.logger is not None:
            # at the stream's step count (continuous across experiences, as train/loss): one row per experience
            trainer.logger.log_metrics({**logged, "experience": i},
                                       step=stream_steps(trainer))

    def _logged(self, prefix: str, rows: list[list[float]], baseline) -> dict[str, float]:
        summary = {f"{prefix}/{k}": v for k, v in metrics.summary(rows, baseline).items() if v is not None}
        return {**{f"{prefix}/acc_exp{j}": rows[-1][j] for j in range(self.n)}, **summary}

    @property
    def summary(self) -> dict[str, float | None]:
        return metrics.summary(self.rows, self.baseline)

    @property
    def val_summary(self) -> dict[str, float | None] | None:
        """The same metrics on the validation splits; None without them (or before any experience)."""
        return metrics.summary(self.val_rows, self.val_baseline) if self.val_rows else None

    def state_dict(self) -> dict:
        return {"rows": self.rows, "baseline": self.baseline, "eval_seconds": self.eval_seconds,
                "val_rows": self.val_rows, "val_baseline": self.val_baseline,
                "task_aware_rows": self.task_aware_rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [list(r) for r in state["rows"]]
        self.baseline = None if state["baseline"] is None else list(state["baseline"])
        self.eval_seconds = list(state.get("eval_seconds", []))
        if self.val_rows is not None:
            self.val_rows = [list(r) for r in state.get("val_rows") or []]
            self.val_baseline = None if state.get("val_baseline") is None else list(state["val_baseline"])
        if self.task_aware_rows is not None:
            self.task_aware_rows = [list(r) for r in state.get("task_aware_rows") or []]
