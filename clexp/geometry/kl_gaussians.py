"""Parameter distance is not distribution distance: pairs of 1-D Gaussians at the same L2 distance
in (μ, σ) with very different KL divergences (closed form, checked by numerical integration)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from clexp.core.plots import pyplot


def kl_closed_form(mu1: float, s1: float, mu2: float, s2: float) -> float:
    """KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) = log(σ2/σ1) + (σ1² + (μ1 − μ2)²) / (2σ2²) − ½."""
    return math.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5


def kl_numeric(mu1, s1, mu2, s2, n: int = 200_001) -> float:
    lo, hi = min(mu1 - 12 * s1, mu2 - 12 * s2), max(mu1 + 12 * s1, mu2 + 12 * s2)
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    p = torch.distributions.Normal(mu1, s1)
    q = torch.distributions.Normal(mu2, s2)
    lp, lq = p.log_prob(x), q.log_prob(x)
    return torch.trapezoid(lp.exp() * (lp - lq), x).item()


PAIRS = [  # the same step of 1.0 in μ, at different σ
    ((0.0, 0.3), (1.0, 0.3)),
    ((0.0, 1.0), (1.0, 1.0)),
    ((0.0, 5.0), (1.0, 5.0)),
]


def run(cfg, out: Path) -> dict:
    rows = []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(PAIRS), figsize=(4 * len(PAIRS), 3.2))
    for ax, ((m1, s1), (m2, s2)) in zip(axes, PAIRS):
        kl = kl_closed_form(m1, s1, m2, s2)
        rows.append({"p": [m1, s1], "q": [m2, s2], "l2_distance": math.dist((m1, s1), (m2, s2)),
                     "kl": kl, "kl_numeric": kl_numeric(m1, s1, m2, s2)})
        lo, hi = min(m1, m2) - 4 * max(s1, s2), max(m1, m2) + 4 * max(s1, s2)
        x = torch.linspace(lo, hi, 500)
        for mu, s, name in ((m1, s1, "p"), (m2, s2, "q")):
            ax.plot(x, torch.distributions.Normal(mu, s).log_prob(x).exp(), label=f"{name} = N({mu:g}, {s:g}²)")
        ax.set_title(f"‖Δθ‖ = {rows[-1]['l2_distance']:.2f},  KL(p‖q) = {kl:.3g}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "kl_gaussians.png", dpi=100)
    plt.close(fig)
    return {"pairs": rows}
