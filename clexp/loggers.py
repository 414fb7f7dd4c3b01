"""The run's metric logger: wandb (offline unless an account is configured), CSV, or none."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

LOGGERS = ("wandb", "csv", "none")


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


def build_logger(cfg: DictConfig, run_dir: Path, tags: list[str], group: str | None, run_id: str | None = None):
    """A Lightning logger for `cfg.logger.name`, writing inside `run_dir`, or None.

    `run_id` continues an existing wandb run (a resumed stream)."""
    kind = cfg.logger.name
    if kind == "none":
        return None
    if kind == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="", version="csv")
    from pytorch_lightning.loggers import WandbLogger

    mode = wandb_mode(cfg.logger.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    logger = WandbLogger(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        name=str(cfg.name),
        save_dir=str(run_dir),
        group=cfg.logger.group or group,
        tags=sorted({*tags, *map(str, cfg.logger.tags)}),
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    return logger


def define_wandb_steps(logger) -> None:
    """Evaluation metrics are stepped by experience in wandb's charts."""
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        run = logger.experiment
        if hasattr(run, "define_metric"):
            run.define_metric("experience")
            run.define_metric("eval/*", step_metric="experience")
