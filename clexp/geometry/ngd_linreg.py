"""SGD against natural-gradient descent on a linear regression y = w·x + b (Gaussian likelihood).

The feature has a small scale, so w sits in a flat direction (Fisher E[x²] ≪ 1) and b in a steep
one (Fisher 1): gradient descent crawls along w, NGD — the same `NGD` optimizer clexp trains with,
fed a sampled-label per-sample Fisher — rescales both to the same speed. Loss curves and the
trajectories in (w, b) for learning rates 0.15 and 0.5.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clexp.core.plots import pyplot
from clexp.optim import NGD


def data(n: int = 200, seed: int = 0, scale: float = 0.2, w: float = 3.0, b: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(n, generator=g, dtype=torch.float64)
    y = w * x + b + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def train(x, y, method: str, lr: float, steps: int, seed: int = 0):
    """Full-batch descent from (w, b) = (−2, −2); returns the loss curve and the trajectory."""
    w = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    opt = NGD([w, b], lr=lr, damping=1e-8, beta=0.0) if method == "ngd" else torch.optim.SGD([w, b], lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses, path = [], [(w.item(), b.item())]
    for _ in range(steps):
        residual = w * x + b - y
        loss = 0.5 * residual.pow(2).mean()
        losses.append(loss.item())
        if method == "ngd":  # labels sampled from the model N(w·x + b, 1): per-sample score ε·(x, 1)
            eps = torch.randn(len(x), generator=g, dtype=torch.float64)
            opt.update_fisher([(eps * x).pow(2).mean(), eps.pow(2).mean()])
        opt.zero_grad()
        loss.backward()
        opt.step()
        path.append((w.item(), b.item()))
    return losses, path


def steps_to(losses: list[float], level: float) -> int | None:
    return next((i for i, v in enumerate(losses) if v < level), None)


def run(cfg, out: Path) -> dict:
    steps = int(cfg.get("steps", 300))
    x, y = data()
    design = torch.stack([x, torch.ones_like(x)], 1)
    best = torch.linalg.lstsq(design, y[:, None]).solution.flatten()
    floor = 0.5 * (design @ best - y).pow(2).mean().item()
    level = floor + 0.01
    runs = {f"{m}_lr{lr}": train(x, y, m, lr, steps) for m in ("sgd", "ngd") for lr in (0.15, 0.5)}
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (losses, path) in runs.items():
        a1.plot(losses, label=name)
        ws, bs = zip(*path)
        a2.plot(ws, bs, marker=".", ms=3, label=name)
    a1.axhline(level, color="gray", ls=":", label="loss floor + 0.01")
    a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("loss")
    a1.set_title("loss (full batch)")
    a1.legend(fontsize=8)
    a2.plot([3.0], [1.0], "k*", ms=12, label="true (w, b)")
    a2.set_xlabel("w")
    a2.set_ylabel("b")
    a2.set_title("trajectories from (−2, −2)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ngd_linreg.png", dpi=100)
    plt.close(fig)
    return {
        "loss_floor": floor,
        "level": level,
        "runs": {name: {"losses": losses, "trajectory": path, "steps_to_level": steps_to(losses, level),
                        "final_loss": losses[-1], "max_loss": max(losses)} for name, (losses, path) in runs.items()},
    }
