"""`logger=tensorboard`: Lightning's TensorBoardLogger with the stream's step conventions.

- `train/loss`, `train/penalty` (and Lightning's `epoch`) at the stream's global step, as every logger;
- every metric logged together with an `experience` key (`eval/*`, `val/*`: one row per experience from
  the accuracy-matrix callback) is stepped by that experience (0 .. T-1), the way wandb's charts step
  them (`define_wandb_steps`); the `experience` key itself is not written;
- the importance histograms (`importance/log10_histogram`) by experience, the run's figures
  (`plots/acc_matrix`, ...) as images and the resolved config as text (`config`).

A resumed run appends to the same folder: its first write marks a restart at the step it resumes from
(TensorBoard's `purge_step`), so the points a killed run logged after its last checkpoint are dropped
by TensorBoard instead of being drawn twice.
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

FOLDER = "tensorboard"  # <run folder>/tensorboard/events.out.tfevents.*


class StreamTensorBoardLogger(TensorBoardLogger):
    def __init__(self, run_dir: str | Path, name: str = "", config: dict | None = None):
        super().__init__(save_dir=str(run_dir), name="", version=FOLDER, default_hp_metric=False)
        self.run_name = name
        self._config = config
        self._first_write = True
        # event files already there: a resumed run (or a run re-made in the same folder)
        self._continues = any(Path(self.log_dir).glob("events.out.tfevents.*"))

    def _start(self, step: int | None) -> None:
        """Once, before the first value: the restart mark (resumed runs) and the config."""
        if not self._first_write or (self._continues and step is None):  # the mark needs a step
            return
        self._first_write = False
        writer = self.experiment
        if self._continues and step is not None:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            # what TensorBoard drops: every event of the earlier files at a step >= `step`
            writer._get_file_writer().add_event(Event(step=int(step), session_log=SessionLog(status=SessionLog.START)))
        elif self._config is not None:
            import yaml

            text = yaml.safe_dump(self._config, sort_keys=False, default_flow_style=False)
            # markdown: an indented block keeps the YAML as it is
            writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        metrics = dict(metrics)
        self._start(step)
        if "experience" in metrics:
            experience = metrics.pop("experience")
            step = int(experience.item() if hasattr(experience, "item") else experience)
        super().log_metrics(metrics, step)

    @rank_zero_only
    def log_histogram(self, tag: str, counts: list[float], edges: list[float], step: int) -> None:
        """A histogram given as counts over bins (`edges`: len(counts) + 1 bin edges), e.g. the log10
        importance at an experience's boundary."""
        if not counts:
            return
        self._start(None)
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        self.experiment.add_histogram_raw(
            tag, min=float(edges[0]), max=float(edges[-1]), num=float(sum(counts)),
            sum=float(sum(c * x for c, x in zip(counts, centres))),
            sum_squares=float(sum(c * x * x for c, x in zip(counts, centres))),
            bucket_limits=[float(e) for e in edges[1:]], bucket_counts=[float(c) for c in counts], global_step=step)

    @rank_zero_only
    def log_images(self, paths: list[Path], step: int = 0) -> None:
        """PNG files as images, `plots/<file stem>`."""
        import numpy as np
        from PIL import Image

        self._start(None)
        for p in paths:
            with Image.open(p) as im:
                pixels = np.asarray(im.convert("RGB"))
            self.experiment.add_image(f"plots/{Path(p).stem}", pixels, step, dataformats="HWC")
        self.finalize("success")  # the last write of the run: flush and close the event file
