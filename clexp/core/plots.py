"""Figures written into the run folder (and logged to wandb when it is the logger)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the functions that need it: clexp-report draws without it
    import torch


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt




def log10_values(importance: dict[str, torch.Tensor]) -> torch.Tensor:
    """log10 of every strictly positive importance (zeros cannot be drawn on a log axis)."""
    import torch

    flat = torch.cat([v.detach().float().reshape(-1).cpu() for v in importance.values()])
    return flat[flat > 0].log10()


def histogram_counts(importance: dict[str, torch.Tensor], bins: int = 80) -> dict:
    """The histogram of log10 importance as numbers (cheap: no matplotlib), plus how many are ≤ 0."""
    import torch

    values = log10_values(importance)
    total = sum(v.numel() for v in importance.values())
    if len(values):
        low, high = float(values.min()), float(values.max())
        high = high if high > low else low + 1.0
        counts = torch.histc(values, bins=bins, min=low, max=high)
        edges = torch.linspace(low, high, bins + 1)
    else:
        counts, edges = torch.zeros(0), torch.zeros(0)
    return {"counts": counts.tolist(), "edges": edges.tolist(), "zeros": total - len(values), "total": total}


def log_importance(trainer, importance: dict[str, torch.Tensor], experience: int, estimator: str) -> None:
    """At a boundary: the histogram's numbers into `importance/exp{i}.json` (drawn once, at the end of
    the run, by `importance_figure`) and, with wandb, as a `wandb.Histogram` — no matplotlib here."""
    import json

    hist = {**histogram_counts(importance), "experience": experience, "estimator": estimator}
    path = Path(trainer.default_root_dir) / "importance" / f"exp{experience}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(hist))
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(trainer.logger, WandbLogger) and hist["counts"]:
        import numpy as np
        import wandb

        trainer.logger.experiment.log({
            "importance/log10_histogram": wandb.Histogram(np_histogram=(np.array(hist["counts"]),
                                                                        np.array(hist["edges"]))),
            "experience": experience,
        })
    elif hasattr(trainer.logger, "log_histogram"):  # logger=tensorboard
        trainer.logger.log_histogram("importance/log10_histogram", hist["counts"], hist["edges"], experience)


def importance_figure(run_dir: Path) -> Path | None:
    """`importance.png`: one histogram of log10 importance per experience (the long tail of a few
    important parameters that EWC relies on), from the numbers the boundaries saved."""
    import json

    files = sorted((Path(run_dir) / "importance").glob("exp*.json"), key=lambda p: int(p.stem[3:]))
    if not files:
        return None
    hists = [json.loads(p.read_text()) for p in files]
    plt = pyplot()
    fig, axes = plt.subplots(len(hists), 1, figsize=(6, 0.6 + 1.5 * len(hists)), sharex=True, squeeze=False)
    for ax, h in zip(axes[:, 0], hists):
        if h["counts"]:
            edges = h["edges"]
            ax.stairs(h["counts"], edges, fill=True, color="tab:blue")
        ax.set_yscale("log")
        ax.set_ylabel("parameters", fontsize=7)
        ax.set_title(f"{h['estimator']}, experience {h['experience']}  ({h['zeros']} of {h['total']} are ≤ 0)",
                     fontsize=8)
    axes[-1, 0].set_xlabel("log10 importance")
    fig.tight_layout()
    path = Path(run_dir) / "importance.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_heatmap(R: list[list[float]], path: Path, title: str = "") -> Path:
    """The accuracy matrix as an annotated heatmap (rows: after training i; columns: experience j)."""
    plt = pyplot()
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
    plt = pyplot()
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
    """`acc_matrix.png`, `acc_curves.png` and (for methods with importances) `importance.png` in the
    run folder, drawn once at the end; also logged to wandb (or TensorBoard)."""
    paths = [accuracy_heatmap(R, Path(run_dir) / "acc_matrix.png", name),
             accuracy_curves(R, Path(run_dir) / "acc_curves.png", name)]
    importance = importance_figure(run_dir)
    if importance is not None:
        paths.append(importance)
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        import wandb

        logger.experiment.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in paths})
    elif hasattr(logger, "log_images"):  # logger=tensorboard
        logger.log_images(paths, step=len(R) - 1)
    return paths
