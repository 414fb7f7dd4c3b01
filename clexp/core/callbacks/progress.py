"""Progress of the training, told which experience of how many is training: a live bar on a terminal,
one plain line per epoch elsewhere (a file, `nohup`, a SLURM log, CI), where a bar's `\\r` redraws would
pile up into kilobytes of one unreadable line; and a bar for long reads outside training (importance
estimation over files), on a terminal only."""

from __future__ import annotations

import sys
import time

from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm, convert_inf

from clexp.config.argspec import check_args

STYLES = ("auto", "bar", "lines")


def stdout_is_terminal() -> bool:
    """True when standard output is a terminal (not a file, a pipe or a captured stream)."""
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ExperienceProgressBar(TQDMProgressBar):
    """`Experience i/T · epoch e/E` as a tqdm bar (`style=bar`), or as one line printed at the end of
    each epoch with its steps, seconds and training loss (`style=lines`); `auto` (the default) draws the
    bar on a terminal and prints lines otherwise. Lightning's own `Training: 0/?` bar never shows."""

    ARGS = {"style": ("choice", STYLES)}

    def __init__(self, refresh_rate: int = 10, style: str = "auto"):
        check_args(ExperienceProgressBar.ARGS, style=style)
        super().__init__(refresh_rate=refresh_rate)
        self.style = style
        self._epoch_start = 0.0

    @property
    def lines(self) -> bool:
        """One line per epoch instead of a bar (decided when asked: standard output may be redirected)."""
        return self.style == "lines" or (self.style == "auto" and not stdout_is_terminal())

    def description(self, trainer, pl_module) -> str:
        i = int(pl_module.experience) + 1
        epochs = "" if trainer.max_epochs in (None, -1) else f"/{trainer.max_epochs}"
        return f"Experience {i}/{pl_module.n_experiences} · epoch {trainer.current_epoch + 1}{epochs}"

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's run id: the same on every line
        return metrics

    def on_train_start(self, trainer, pl_module):
        if self.lines:
            self.train_progress_bar = Tqdm(disable=True)
            return
        # created without drawing: the first draw is the first epoch's, with its description and total
        bar = Tqdm(desc=self.description(trainer, pl_module), total=convert_inf(self.total_train_batches),
                   position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                   file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT, delay=1e9)
        self.train_progress_bar = bar

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start = time.perf_counter()
        bar = self.train_progress_bar
        if bar.disable:
            return
        bar.delay = 0
        bar.set_description_str(self.description(trainer, pl_module), refresh=False)
        bar.reset(total=convert_inf(self.total_train_batches))  # one draw, already with this epoch's text

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.lines:
            return super().on_train_epoch_end(trainer, pl_module)
        if not trainer.is_global_zero or self.is_disabled:
            return None
        steps = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        seconds = time.perf_counter() - self._epoch_start
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in self.get_metrics(trainer, pl_module).items())
        print(f"{self.description(trainer, pl_module)}: {steps} steps, {seconds:.1f} s"
              f"{', ' + shown if shown else ''}", flush=True)
        return None


def chunk_progress(chunks, total: int, desc: str, trainer=None):
    """Yield the `(size, item)` pairs of `chunks` unchanged; with a progress bar counting `total`
    inputs that appears only once the read has taken more than 2 seconds (never when the run has no
    progress bar or prints lines instead of bars, nor on ranks other than 0)."""
    callback = getattr(trainer, "progress_bar_callback", None) if trainer is not None else None
    shown = callback is not None and trainer.is_global_zero and not getattr(callback, "lines", False)
    if not shown:
        yield from chunks
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="input", delay=2.0, leave=False, dynamic_ncols=True) as bar:
        for size, item in chunks:
            yield size, item
            bar.update(size)
