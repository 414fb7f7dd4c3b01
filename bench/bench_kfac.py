"""KFAC's cost: the Kronecker factors over 1,000 inputs against one training epoch over the same
inputs (≤ 5×), and a KFAC-EWC training step against a naive step (≤ 1.3×), MLP 784-400-400-10.

    python -m bench.bench_kfac [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.bench_penalty import method_overrides
from bench.common import cli, median_time, row
from bench.steps import interleaved_ratios
from clexp.curvature.kronecker import kfac_factors


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, 10))


def epoch(model, x, y, batch=128):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for b in range(0, len(y), batch):
        loss = F.cross_entropy(model(x[b: b + batch]), y[b: b + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    n, repeats = (64, 1) if tiny else (1000, 3)
    torch.manual_seed(0)
    model = mlp().to(device)
    x, y = torch.randn(n, 1, 28, 28, device=device), torch.randint(0, 10, (n,), device=device)
    t_epoch = median_time(lambda: epoch(model, x, y), repeats, warmup=1)
    rows = []
    for variant in ("exact", "sampled"):
        t = median_time(lambda: kfac_factors(model, x, variant=variant), repeats, warmup=1)
        ratio = t / t_epoch
        rows.append(row("kfac", f"{variant} factors / epoch, MLP", ratio, "<= 5", ratio <= 5, t))
    steps, rounds = (6, 1) if tiny else (60, 7)
    ratios, seconds = interleaved_ratios({m: method_overrides(m) for m in ("naive", "kfac_ewc")}, "naive", device,
                                         steps, rounds)
    rows.append(row("kfac", f"kfac_ewc step vs naive ({device})", ratios["kfac_ewc"], "<= 1.3",
                    ratios["kfac_ewc"] <= 1.3, seconds["kfac_ewc"]))
    return rows


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
