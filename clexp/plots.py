"""Figures written into the run folder (and logged to wandb when it is the logger)."""

from __future__ import annotations

from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def log10_values(importance: dict[str, torch.Tensor]) -> torch.Tensor:
    """log10 of every strictly positive importance (zeros cannot be drawn on a log axis)."""
    flat = torch.cat([v.detach().float().reshape(-1).cpu() for v in importance.values()])
    return flat[flat > 0].log10()


def importance_histogram(importance: dict[str, torch.Tensor], path: Path, title: str) -> Path:
    """Histogram of log10 importance: the long tail of a few important parameters that EWC relies on."""
    plt = _pyplot()
    values = log10_values(importance)
    n_total = sum(v.numel() for v in importance.values())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if len(values):
        ax.hist(values.numpy(), bins=80, color="tab:blue")
    ax.set_xlabel("log10 importance")
    ax.set_ylabel("parameters")
    ax.set_yscale("log")
    ax.set_title(f"{title}  ({n_total - len(values)} of {n_total} are zero)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_importance(trainer, importance: dict[str, torch.Tensor], experience: int, estimator: str) -> None:
    """Save `importance/exp{i}.png` in the run folder; log the histogram and the image to wandb."""
    path = Path(trainer.default_root_dir) / "importance" / f"exp{experience}.png"
    importance_histogram(importance, path, f"{estimator}, experience {experience}")
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(trainer.logger, WandbLogger):
        import wandb

        values = log10_values(importance).numpy()
        trainer.logger.experiment.log({
            "importance/log10_histogram": wandb.Histogram(values, num_bins=64),
            "importance/histogram_png": wandb.Image(str(path)),
            "experience": experience,
        })
