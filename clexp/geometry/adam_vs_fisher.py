"""After training on an experience with Adam: Adam's second-moment estimate (bias-corrected) against
the exact diagonal Fisher, as a log-log scatter with their rank (Spearman) correlation. Related, not
equal: Adam averages squared MINI-BATCH gradients over time, and uses their square root."""

from __future__ import annotations

from pathlib import Path

import torch

from clexp.core.plots import pyplot
from clexp.curvature import diag_fisher
from clexp.geometry.first_experience import train_first_experience


def ranks(v: torch.Tensor) -> torch.Tensor:
    r = torch.empty_like(v)
    r[v.argsort()] = torch.arange(len(v), dtype=v.dtype)
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = ranks(a.double()), ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return (ra @ rb / (ra.norm() * rb.norm())).item()


def run(cfg, out: Path) -> dict:
    model, opt, exp, mask = train_first_experience(cfg)
    if not isinstance(opt, torch.optim.Adam):
        raise ValueError("task=adam_vs_fisher needs optimizer=adam")
    fisher = diag_fisher(model, exp.x_train, output_mask=mask)
    second, exact = [], []
    beta2 = opt.param_groups[0]["betas"][1]
    for name, p in model.named_parameters():
        state = opt.state.get(p)
        if not state:
            continue
        step = float(state["step"])
        second.append((state["exp_avg_sq"] / (1 - beta2**step)).reshape(-1))
        exact.append(fisher[name].reshape(-1))
    v, f = torch.cat(second), torch.cat(exact)
    rho = spearman(v, f)
    keep = (v > 0) & (f > 0)
    idx = torch.randperm(int(keep.sum()), generator=torch.Generator().manual_seed(0))[:20000]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(f[keep][idx].numpy(), v[keep][idx].numpy(), s=2, alpha=0.3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("exact diagonal Fisher")
    ax.set_ylabel("Adam second moment (bias-corrected)")
    ax.set_title(f"Spearman rank correlation {rho:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "adam_vs_fisher.png", dpi=100)
    plt.close(fig)
    return {"spearman": rho, "n_parameters": len(v), "mean_ratio": (v.sum() / f.sum()).item()}
