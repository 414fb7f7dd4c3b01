"""Experiments on the geometry behind the methods (issue: the Fisher as the local metric of the
model's output distribution). Each writes PNG figures and the numbers behind them (JSON) into the
run folder; `run_task` dispatches on `cfg.task` (set by the presets in conf/experiment/)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

TASKS = ("ngd_linreg", "fisher_vs_empirical", "fisher_spectrum", "adam_vs_fisher", "kl_gaussians")


def run_task(cfg: DictConfig, run_dir: Path) -> dict:
    """Run the experiment `cfg.task`; write `<task>.json` and its figures; log the figures to wandb."""
    import importlib

    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r}: allowed are {', '.join(TASKS)}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"clexp.geometry.{cfg.task}")
    numbers = module.run(cfg, run_dir)
    numbers["config"] = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / f"{cfg.task}.json").write_text(json.dumps(numbers, indent=2))
    _log_figures(cfg, run_dir)
    return numbers


def _log_figures(cfg: DictConfig, run_dir: Path) -> None:
    from clexp.core.build import build
    from clexp.core.loggers import WandbLogging, wandb_mode

    logging = build(cfg.logger, "logger")
    if not isinstance(logging, WandbLogging):
        return
    import wandb

    run = wandb.init(project=logging.project, entity=logging.entity, name=str(cfg.task), dir=str(run_dir),
                     mode=wandb_mode(logging.mode), config=OmegaConf.to_container(cfg, resolve=True),
                     tags=["geometry", str(cfg.task)])
    run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in sorted(run_dir.glob("*.png"))})
    run.finish()
