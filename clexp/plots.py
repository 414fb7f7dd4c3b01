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
    ax.set_title(f"{title}  ({n_total - len(values)} of {n_total} are ≤ 0)", fontsize=9)
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


def accuracy_heatmap(R: list[list[float]], path: Path, title: str = "") -> Path:
    """The accuracy matrix as an annotated heatmap (rows: after training i; columns: experience j)."""
    plt = _pyplot()
    T = len(R[0])
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * T, 0.8 + 0.5 * len(R)))
    im = ax.imshow([[100 * a for a in r] for r in R], vmin=0, vmax=100, cmap="viridis")
    for i, row in enumerate(R):
        for j, a in enumerate(row):
            ax.text(j, i, f"{100 * a:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if a < 0.6 else "black")
    ax.set_xticks(range(T))
    ax.set_yticks(range(len(R)))
    ax.set_xlabel("evaluated on experience")
    ax.set_ylabel("after training experience")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_curves(R: list[list[float]], path: Path, title: str = "") -> Path:
    """Each experience's accuracy over the stream, from the moment it is trained."""
    plt = _pyplot()
    T = len(R[0])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for j in range(T):
        xs = list(range(j, len(R)))
        ax.plot(xs, [100 * R[i][j] for i in xs], marker="o", label=f"exp {j}")
    ax.set_xlabel("after training experience")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_xticks(range(len(R)))
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_figures(R: list[list[float]], run_dir: Path, name: str, logger=None) -> list[Path]:
    """`acc_matrix.png` and `acc_curves.png` in the run folder; also logged to wandb."""
    paths = [accuracy_heatmap(R, Path(run_dir) / "acc_matrix.png", name),
             accuracy_curves(R, Path(run_dir) / "acc_curves.png", name)]
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        logger.experiment.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in paths})
    return paths
