"""Targets 4 and 5 — the diagonal Fisher over 1,000 inputs against one training epoch over the same
inputs (SGD, batch 128): exact ≤ 4×, sampled and empirical ≤ 1.5×; against a batch-size-1 loop with
one backward per class (what the papers' reference code does): ≥ 50× faster for the exact Fisher.
Peak memory of the exact Fisher is bounded by the chunk size, not by the number of inputs.

    python -m bench.bench_fisher [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import format_table, median_time, row
from clexp.importance import diag_fisher


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def epoch(model, x, y, batch=128):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for b in range(0, len(y), batch):
        loss = F.cross_entropy(model(x[b: b + batch]), y[b: b + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()


def loop_fisher(model, x):
    """The reference code's way: batch size 1, one backward per class."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for n in range(len(x)):
        logp = F.log_softmax(model(x[n: n + 1])[0], 0)
        for c in range(len(logp)):
            grads = torch.autograd.grad(logp[c], params, retain_graph=True)
            w = logp[c].exp().detach()
            for t, g in zip(total, grads):
                t += w * g * g
    return total


def peak_rss_mb(n: int, chunk: int, device: str) -> float:
    """Peak resident memory of a fresh process computing the exact Fisher of the CNN on n inputs."""
    code = (
        "import re, torch; from bench.bench_fisher import cnn; from clexp.importance import diag_fisher;"
        "kb = lambda key: int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1));"
        f"m = cnn().to('{device}'); x = torch.randn({n}, 1, 28, 28, device='{device}');"
        f"diag_fisher(m, x[:{chunk}], chunk_size={chunk});"  # warm-up: allocator pools, lazy imports
        "open('/proc/self/clear_refs', 'w').write('5'); r0 = kb('VmRSS');"  # reset the peak (VmHWM)
        f"diag_fisher(m, x, chunk_size={chunk});"
        "print((kb('VmHWM') - r0) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    n = 64 if tiny else 1000
    n_loop = 8 if tiny else 50
    repeats = 1 if tiny else 3
    torch.manual_seed(0)
    rows = []
    for name, make in (("MLP 784-400-400-10", mlp), ("CNN", cnn)):
        model = make().to(device)
        x = torch.randn(n, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (n,), device=device)
        t_epoch = median_time(lambda: epoch(model, x, y), repeats, warmup=1)
        times = {}
        for variant in ("exact", "sampled", "empirical"):
            times[variant] = median_time(lambda: diag_fisher(model, x, y, variant=variant), repeats, warmup=1)
            target = 4.0 if variant == "exact" else 1.5
            ratio = times[variant] / t_epoch
            rows.append(row("fisher", f"{variant} / epoch, {name}", ratio, f"<= {target:g}", ratio <= target,
                            times[variant]))
        t_loop = median_time(lambda: loop_fisher(model, x[:n_loop]), 1) * n / n_loop  # scaled to n inputs
        ratio = t_loop / times["exact"]
        rows.append(row("fisher", f"bs-1 loop / exact, {name} (loop on {n_loop}, scaled)", ratio, ">= 50",
                        ratio >= 50, t_loop))
    if not tiny:
        small, large = peak_rss_mb(1000, 128, device), peak_rss_mb(4000, 128, device)
        ratio = large / max(small, 1.0)
        rows.append(row("fisher", f"peak memory 4000 vs 1000 inputs ({large:.0f}/{small:.0f} MB)", ratio,
                        "<= 1.5", ratio <= 1.5))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print(format_table(run(args.tiny, args.device)))


if __name__ == "__main__":
    main()
