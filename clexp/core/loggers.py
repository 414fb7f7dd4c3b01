"""The run's metric logger: wandb (offline unless an account is configured), TensorBoard, CSV, or none."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from clexp.config.argspec import check_args


def wandb_has_credentials() -> bool:
    """True when an API key is configured (environment or `wandb login`'s netrc entry); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
        return netrc.netrc(path).authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(requested: str) -> str:
    """`auto` → online with credentials, offline otherwise; WANDB_MODE in the environment wins."""
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    if requested == "auto":
        return "online" if wandb_has_credentials() else "offline"
    return requested


class Logging:
    """A logger choice (`conf/logger/*.yaml`), checked when built; called once per run with the run's
    folder, name, tags, group and config to create the Lightning logger (or None)."""

    def __call__(self, run_dir: Path, name: str, tags: list[str], group: str | None, config: dict,
                 run_id: str | None = None):
        return None


class NoLogging(Logging):
    """No metric logger (results.json is still written)."""


class CSVLogging(Logging):
    """Lightning's CSVLogger: `csv/metrics.csv` in the run folder."""

    def __call__(self, run_dir, name, tags, group, config, run_id=None):
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="", version="csv")


class TensorBoardLogging(Logging):
    """Lightning's TensorBoardLogger: event files in `tensorboard/` in the run folder (see
    `clexp.core.tensorboard_logger.StreamTensorBoardLogger` for the steps)."""

    def __call__(self, run_dir, name, tags, group, config, run_id=None):
        from clexp.core.tensorboard_logger import StreamTensorBoardLogger

        return StreamTensorBoardLogger(run_dir, name=name, config=config)


class WandbLogging(Logging):
    """Weights & Biases, into the run folder; `mode` auto = online with credentials, else offline.
    `run_id` continues an existing wandb run (a resumed stream)."""

    MODES = ("auto", "online", "offline", "disabled")
    ARGS = {"mode": ("choice", MODES)}

    def __init__(self, project: str = "clexp", entity: str | None = None, mode: str = "auto",
                 group: str | None = None, tags: list[str] = ()):
        check_args(WandbLogging.ARGS, mode=mode)
        self.project, self.entity, self.mode, self.group = project, entity, mode, group
        self.tags = [str(t) for t in tags]

    def __call__(self, run_dir, name, tags, group, config, run_id=None):
        from pytorch_lightning.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")
        logger = WandbLogger(
            project=self.project,
            entity=self.entity,
            name=name,
            save_dir=str(run_dir),
            group=group or self.group,
            tags=sorted({*tags, *self.tags}),
            mode=wandb_mode(self.mode),
            id=run_id,
            resume="allow" if run_id else None,
            config=config,
        )
        # Lightning always passes `anonymous` (None), and wandb warns that the setting has no effect
        getattr(logger, "_wandb_init", {}).pop("anonymous", None)
        return logger


def close_logger(logger, failed: bool = False) -> None:
    """Finish the wandb run of `logger` if it started one (exit code 1 when the job failed), so that
    every job of a sweep owns exactly one wandb run, closed before the next job starts."""
    experiment = getattr(logger, "_experiment", None)
    if experiment is None or not hasattr(experiment, "finish"):
        return
    try:
        experiment.finish(exit_code=1 if failed else 0)
    finally:
        logger._experiment = None


def close_stale_wandb_run() -> None:
    """Finish a wandb run still open in this process (left by an earlier job that crashed outside
    clexp's hands): Lightning's WandbLogger would otherwise log into it."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=1)


def define_wandb_steps(logger) -> None:
    """Evaluation metrics are stepped by experience in wandb's charts."""
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        run = logger.experiment
        if hasattr(run, "define_metric"):
            run.define_metric("experience")
            run.define_metric("eval/*", step_metric="experience")
            run.define_metric("val/*", step_metric="experience")
            run.define_metric("anytime/*", step_metric="trainer/global_step")  # inside experiences
