"""Kunstner, Balles & Hennig 2019 (Fig. 1) on a linear least-squares problem in θ = (w, b): the
gradient field with gradient-descent trajectories, the natural-gradient field (Fisher = E[φφᵀ]
under the model's Gaussian, whatever θ) and the field preconditioned by the EMPIRICAL Fisher
(E[r² φφᵀ] with the residuals r at θ), which bends away from the optimum."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from clexp.core.plots import pyplot


def problem(n: int = 100, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = 1.0 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)  # off-centre: w and b correlate
    y = 2.0 * x - 1.0 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    phi = torch.stack([x, torch.ones_like(x)], 1)
    optimum = torch.linalg.lstsq(phi, y[:, None]).solution.flatten()
    return phi, y, optimum


def directions(theta: torch.Tensor, phi, y, damping: float = 1e-8) -> dict[str, torch.Tensor]:
    """The descent direction of each method at θ (full 2×2 matrices)."""
    r = phi @ theta - y
    grad = (r[:, None] * phi).mean(0)
    fisher = phi.t() @ phi / len(y)
    empirical = (r[:, None, None] ** 2 * phi[:, :, None] * phi[:, None, :]).mean(0)
    eye = damping * torch.eye(2, dtype=theta.dtype)
    return {"gradient": -grad, "natural": -torch.linalg.solve(fisher + eye, grad),
            "empirical": -torch.linalg.solve(empirical + eye, grad)}


def trajectory(theta0, phi, y, method: str, lr: float, steps: int):
    theta, path = theta0.clone(), [theta0.tolist()]
    for _ in range(steps):
        theta = theta + lr * directions(theta, phi, y)[method]
        path.append(theta.tolist())
    return path


def angle_to_optimum(d: torch.Tensor, theta: torch.Tensor, optimum: torch.Tensor) -> float:
    target = optimum - theta
    cos = (d @ target) / (d.norm() * target.norm()).clamp_min(1e-300)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos.item()))))


def run(cfg, out: Path) -> dict:
    phi, y, optimum = problem()
    ws = torch.linspace(optimum[0] - 3, optimum[0] + 3, 15, dtype=torch.float64)
    bs = torch.linspace(optimum[1] - 3, optimum[1] + 3, 15, dtype=torch.float64)
    starts = [optimum + torch.tensor(d, dtype=torch.float64) for d in ((-2.5, 2.5), (2.5, 2.0), (2.0, -2.5))]
    steps = {"gradient": (0.3, 60), "natural": (0.5, 20), "empirical": (0.5, 20)}
    angles = {m: [] for m in steps}
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    axes[0].scatter(phi[:, 0].numpy(), y.numpy(), s=8, alpha=0.6)
    xs = torch.linspace(phi[:, 0].min(), phi[:, 0].max(), 2, dtype=torch.float64)
    axes[0].plot(xs.numpy(), (optimum[0] * xs + optimum[1]).numpy(), "k-", label="least squares")
    axes[0].set_title("the data: y = w·x + b + noise", fontsize=9)
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[0].legend(fontsize=8)
    for ax, method in zip(axes[1:], steps):
        U, V, X, Y = [], [], [], []
        for w in ws:
            for b in bs:
                theta = torch.stack([w, b])
                if torch.allclose(theta, optimum):
                    continue
                d = directions(theta, phi, y)[method]
                angles[method].append(angle_to_optimum(d, theta, optimum))
                d = d / d.norm().clamp_min(1e-300)
                X.append(w.item())
                Y.append(b.item())
                U.append(d[0].item())
                V.append(d[1].item())
        ax.quiver(X, Y, U, V, angles="xy", color="gray", alpha=0.6)
        lr, n = steps[method]
        for s in starts:
            path = trajectory(s, phi, y, method, lr, n)
            ax.plot(*zip(*path), marker=".", ms=4)
        ax.plot(*optimum.tolist(), "k*", ms=12)
        ax.set_title(f"{method} field (mean angle to optimum {sum(angles[method]) / len(angles[method]):.1f}°)",
                     fontsize=9)
        ax.set_xlabel("w")
        ax.set_ylabel("b")
    fig.tight_layout()
    fig.savefig(out / "fisher_vs_empirical.png", dpi=100)
    plt.close(fig)
    return {
        "optimum": optimum.tolist(),
        "mean_angle_deg": {m: sum(a) / len(a) for m, a in angles.items()},
        "max_angle_deg": {m: max(a) for m, a in angles.items()},
        "final_distance": {m: [math.dist(trajectory(s, phi, y, m, *steps[m])[-1], optimum.tolist()) for s in starts]
                           for m in steps},
    }
