"""What a run says, and where it goes: the console and the run folder's `train.log`.

`train.log` (Hydra's file handler, conf/hydra/job_logging/clexp.yaml) holds the run's story with times:
its start, each experience's accuracy row, every warning (Python warnings included: `capture_warnings`),
the failure line and the final table. The console shows the same lines without the time stamps, each on a
line of its own even while a progress bar is drawn (`ConsoleHandler`). Outside the CLI (a notebook,
`clexp.run`), where no handler is configured, `say` prints instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("clexp")

FILE_ONLY = {"file_only": True}  # `extra=` of a record for train.log only (the console already has it)


def say(message: str, *args) -> None:
    """One line of the run's story: logged (console and train.log) where clexp's job logging is set up (the
    CLI, conf/hydra/job_logging/clexp.yaml), printed elsewhere (a notebook, a script, `clexp.run`)."""
    if log.isEnabledFor(logging.INFO) and any(isinstance(h, ConsoleHandler) for h in logging.getLogger().handlers):
        log.info(message, *args)
    else:
        print(message % args if args else message, flush=True)


def capture_warnings() -> None:
    """Python warnings go through logging (logger `py.warnings`: the console and train.log), not straight
    to stderr, each as one line: `UserWarning: message (file.py:12)`. (Like `logging.captureWarnings`, but
    one line, and again after anything restored `warnings.showwarning`.)"""
    import warnings

    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("py.warnings").warning("%s: %s (%s:%s)", category.__name__, message, filename, lineno)


def continue_story(folder: Path) -> None:
    """A resumed run: its story is also appended to the train.log of the folder it continues (besides the
    new command's own run folder), as Hydra's file handler writes it. No file logging (a notebook): nothing.
    Hydra's logging set-up of the next job (a sweep) removes the handler again."""
    target = (Path(folder) / "train.log").resolve()
    root = logging.getLogger()
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    if not files or any(Path(h.baseFilename).resolve() == target for h in files):
        return
    handler = logging.FileHandler(target, mode="a")
    handler.setFormatter(files[0].formatter)
    handler.setLevel(files[0].level)
    root.addHandler(handler)


class ConsoleHandler(logging.StreamHandler):
    """Hydra's console handler, but each record written with `tqdm.write` — on a line of its own above a
    live progress bar instead of after the bar's text — and records marked `file_only` left out. Without a
    `stream` it writes to whatever `sys.stdout` is when the record comes (a redirect made later included)."""

    def __init__(self, stream=None):
        logging.Handler.__init__(self)  # not StreamHandler's, which would fix sys.stderr when no stream is given
        self._fixed = stream

    @property
    def stream(self):
        return self._fixed if self._fixed is not None else sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler.setStream
        self._fixed = value

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging's own contract: a failing handler reports, never raises
            self.handleError(record)


class ConsoleFormatter(logging.Formatter):
    """Information as the bare message; warnings and errors with their level and source:
    `WARNING [clexp] experience 1: ...`."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno < logging.WARNING:
            return message
        source = "warnings" if record.name == "py.warnings" else record.name
        return f"{record.levelname} [{source}] {message}"
