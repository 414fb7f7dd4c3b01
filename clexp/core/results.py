"""`results.json`: the machine-readable record of a run, and the readable table printed at its end."""

from __future__ import annotations

import json
import math
from pathlib import Path

RESULTS_FILE = "results.json"


def write_results(results: dict, run_dir: Path) -> Path:
    path = Path(run_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=_jsonable))
    tmp.replace(path)
    return path


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def read_results(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    return json.loads(path.read_text())


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "   n/a"
    return f"{100 * v:6.1f}"


def format_table(results: dict) -> str:
    """The accuracy matrix (percent) and the summary metrics as aligned text."""
    R = results["acc_matrix"]
    T = len(R[0]) if R else 0
    lines = ["Accuracy (%) on each experience's test set (rows: after training experience i)"]
    width = len(f"  {_fmt(1.0)}")  # a value's cell without its trailing space: headers end where values end
    lines.append("          " + "".join(f"{f'exp{j}':>{width}} " for j in range(T)))
    if results.get("baseline_acc") is not None:
        lines.append("  init    " + "".join(f"  {_fmt(a)} " for a in results["baseline_acc"]))
    for i, row in enumerate(R):
        lines.append(f"  after {i:<2d}" + "".join(f"  {_fmt(a)} " for a in row))
    m = results["metrics"]
    lines.append("")
    lines.append(
        f"average accuracy {_fmt(m['avg_acc']).strip()}%   forgetting {_fmt(m['forgetting']).strip()}%   "
        f"BWT {_fmt(m['bwt']).strip()}%   FWT {_fmt(m['fwt']).strip()}%"
    )
    v = results.get("val_metrics")
    if v:
        lines.append(f"validation: average accuracy {_fmt(v['avg_acc']).strip()}%   "
                     f"forgetting {_fmt(v['forgetting']).strip()}%")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    """The library versions a run used (recorded in results.json)."""
    import platform

    import hydra
    import pytorch_lightning as pl
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "hydra": hydra.__version__,
    }


def collect(cfg, accuracy, train_seconds: list[float], total_seconds: float, n_experiences: int,
            run_dir: Path) -> dict:
    """The results dict of a completed run (what `results.json` holds)."""
    from omegaconf import OmegaConf

    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "seed": int(cfg.seed),
        "status": "completed",
        "acc_matrix": accuracy.rows,
        "baseline_acc": accuracy.baseline,
        "metrics": accuracy.summary,
        # the same on each experience's validation split (train.val_fraction); null without one
        "val_acc_matrix": accuracy.val_rows,
        "val_baseline_acc": accuracy.val_baseline,
        "val_metrics": accuracy.val_summary,
        "timings": {
            "train_s": list(train_seconds),
            "eval_s": accuracy.eval_seconds,
            "total_s": total_seconds,
        },
        "versions": versions(),
        "n_experiences": n_experiences,
        "run_dir": str(run_dir),
    }


def accuracy_table(rows: list[list[float]], baseline: list[float] | None):
    """The accuracy matrix (percent) as a `wandb.Table`: one row per 'after experience i', the initial
    model's row first."""
    import wandb

    T = len(rows[0]) if rows else len(baseline or [])
    data = ([["init", *[100 * a for a in baseline]]] if baseline is not None else []) + \
        [[f"after {i}", *[100 * a for a in r]] for i, r in enumerate(rows)]
    return wandb.Table(columns=["after", *[f"exp{j}" for j in range(T)]], data=data)


def finish_outputs(results: dict, cfg, accuracy, run_dir: Path, logger) -> None:
    """Write results.json, the run's figures, and close the wandb run with its summary."""
    write_results(results, run_dir)
    if accuracy.rows and cfg.get("plots", True):
        from clexp.core.plots import run_figures

        run_figures(accuracy.rows, run_dir, str(cfg.name), logger)
    if logger is not None and hasattr(logger, "experiment"):
        from pytorch_lightning.loggers import WandbLogger

        if isinstance(logger, WandbLogger):
            run = logger.experiment
            run.log({"eval/acc_matrix": accuracy_table(accuracy.rows, accuracy.baseline)})
            run.summary.update({f"final/{k}": v for k, v in results["metrics"].items() if v is not None})
            run.summary.update({f"final/val_{k}": v for k, v in (results.get("val_metrics") or {}).items()
                                if v is not None})
            run.finish()
