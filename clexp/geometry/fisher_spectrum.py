"""The diagonal Fisher after the first experience (Split Digits offline; Split MNIST with
dataset=mnist), exact against sampled, empirical and batch: histograms over a log axis side by side
— the long tail of a few important parameters — and each estimator's trace relative to the exact."""

from __future__ import annotations

from pathlib import Path

import torch

from clexp.core.plots import pyplot
from clexp.curvature import diag_fisher
from clexp.geometry.first_experience import train_first_experience

VARIANTS = ("exact", "sampled", "empirical", "batch")


def run(cfg, out: Path) -> dict:
    model, _, exp, mask = train_first_experience(cfg)
    x, y = exp.x_train, exp.y_train
    g = torch.Generator().manual_seed(cfg.seed)
    # the batch variant's B is the training batch size, as in the method configs (FisherImportance)
    fishers = {v: diag_fisher(model, x, y, variant=v, output_mask=mask, generator=g,
                              batch_size=cfg.train.batch_size) for v in VARIANTS}
    flat = {v: torch.cat([t.reshape(-1) for t in f.values()]) for v, f in fishers.items()}
    trace = {v: flat[v].sum().item() for v in VARIANTS}
    ratios = {v: trace[v] / trace["exact"] for v in VARIANTS}
    rel_err = {v: ((flat[v] - flat["exact"]).norm() / flat["exact"].norm()).item() for v in VARIANTS}
    positive = [flat[v][flat[v] > 0] for v in VARIANTS]
    lo = min(p.min().log10().item() for p in positive)
    hi = max(p.max().log10().item() for p in positive)
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharex=True, sharey=True)
    for ax, v, p in zip(axes, VARIANTS, positive):
        ax.hist(p.log10().numpy(), bins=torch.linspace(lo, hi, 70).numpy())
        ax.set_yscale("log")
        ax.set_title(f"{v}: trace {ratios[v]:.3g}× exact", fontsize=9)
        ax.set_xlabel("log10 F")
    axes[0].set_ylabel("parameters")
    fig.tight_layout()
    fig.savefig(out / "fisher_spectrum.png", dpi=100)
    plt.close(fig)
    print("trace relative to the exact Fisher: " + ", ".join(f"{v} {ratios[v]:.3g}" for v in VARIANTS))
    top = flat["exact"].sort(descending=True).values
    share = (top[: max(1, len(top) // 100)].sum() / top.sum()).item()
    return {"trace": trace, "trace_ratio": ratios, "relative_error": rel_err,
            "top1pct_share_of_exact_trace": share, "n_parameters": len(top)}
