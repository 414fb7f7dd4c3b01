"""The diagonal Fisher against one training epoch over the same 1,000 inputs (SGD, batch 128),
measured side by side in one process: exact ≤ 4×, sampled and empirical ≤ 1.5×; and against a
batch-size-1 Python loop with one backward per class (the papers' reference code): ≥ 50× slower
than the exact Fisher (the loop is timed on a subset and scaled linearly to 1,000 inputs). Peak
memory of the exact Fisher is bounded by the chunk size, not by the number of inputs.

The targets come from the MLP. On the CNN two of them are out of reach of any exact method: the
exact Fisher needs C − 1 = 9 backward passes and 9 per-sample weight gradients through conv2,
about 9·(2/3) ≈ 6× the convolution work of one epoch (forward + input gradient + weight
gradient), and a batch-size-1 loop does the same work, only less batched (~3× slower on CPU).

    python -m bench.bench_fisher [--tiny] [--device cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import format_table, row
from clexp.curvature import diag_fisher

TARGETS = {"exact": 4.0, "sampled": 1.5, "empirical": 1.5}


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


MODELS = {"MLP 784-400-400-10": mlp, "CNN 32c-64c-128": cnn}


def epoch(model, x, y, batch=128):
    """One training epoch: forward, backward, SGD step per batch."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    for b in range(0, len(y), batch):
        loss = F.cross_entropy(model(x[b : b + batch]), y[b : b + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()


def loop_fisher(model, x):
    """The reference code's way: batch size 1, one backward per class."""
    model.eval()
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for n in range(len(x)):
        logp = F.log_softmax(model(x[n : n + 1])[0], 0)
        for c in range(len(logp)):
            grads = torch.autograd.grad(logp[c], params, retain_graph=True)
            w = logp[c].exp().detach()
            for t, g in zip(total, grads):
                t += w * g * g
    return [t / len(x) for t in total]


def timed(fn, device: str) -> float:
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def interleaved(fns: dict, device: str, repeats: int) -> dict[str, list[float]]:
    """Seconds of each function per round, all functions in every round (after one warm-up round):
    ratios taken within a round are robust to a load that drifts over time on a shared machine."""
    for fn in fns.values():
        timed(fn, device)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn, device))
    return times


def peak_memory_mb(n: int, chunk: int, device: str, threads: int) -> float:
    """Peak memory of the exact Fisher of the CNN on n inputs, above what was held before, in a fresh
    process: CUDA's max_memory_allocated, or on CPU the peak resident set (VmHWM, reset first)."""
    code = f"""
import re, torch
from bench.bench_fisher import cnn
from clexp.curvature import diag_fisher
torch.set_num_threads({threads})
kb = lambda key: int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1))
m, x = cnn().to('{device}'), torch.randn({n}, 1, 28, 28, device='{device}')
diag_fisher(m, x[:{chunk}], chunk_size={chunk})  # warm-up: allocator pools, lazy imports
if '{device}'.startswith('cuda'):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); before = torch.cuda.memory_allocated()
    diag_fisher(m, x, chunk_size={chunk}); torch.cuda.synchronize()
    print((torch.cuda.max_memory_allocated() - before) / 2**20)
else:
    open('/proc/self/clear_refs', 'w').write('5'); before = kb('VmRSS')
    diag_fisher(m, x, chunk_size={chunk})
    print((kb('VmHWM') - before) / 1024)
"""
    # large blocks straight from and back to the OS, one arena: the resident set follows live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:  # e.g. no /proc/self/clear_refs: no measurement
        print(out.stderr[-2000:], file=sys.stderr)
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def _model_rows(name, make, n, n_loop, repeats, device) -> list[dict]:
    model = make().to(device)
    x = torch.randn(n, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    fns = {"epoch": lambda: epoch(model, x, y)}
    fns.update({v: (lambda v=v: diag_fisher(model, x, y, variant=v)) for v in TARGETS})
    times = interleaved(fns, device, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [row("fisher", f"one epoch, {name}", 1.0, "reference", True, med["epoch"])]
    for variant, target in TARGETS.items():
        ratio = statistics.median(t / e for t, e in zip(times[variant], times["epoch"]))
        rows.append(row("fisher", f"{variant} / epoch, {name}", ratio, f"<= {target:g}", ratio <= target,
                        med[variant]))
    loop = {"loop": lambda: loop_fisher(model, x[:n_loop]), "exact": fns["exact"]}
    t = interleaved(loop, device, 1)
    t_loop = t["loop"][0] * n / n_loop  # scaled linearly to n inputs
    ratio = t_loop / t["exact"][0]
    rows.append(row("fisher", f"loop/exact, {name} ({n_loop} scaled)", ratio, ">= 50", ratio >= 50, t_loop))
    return rows


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    """Rows {bench, case, ratio, target, ok, seconds}; `tiny`: 64 inputs, 1 repeat, no memory check."""
    n, n_loop, repeats = (64, 4, 1) if tiny else (1000, 100, 5)
    torch.manual_seed(0)
    rows = []
    for name, make in MODELS.items():
        rows += _model_rows(name, make, n, n_loop, repeats, device)
    if not tiny:
        threads = torch.get_num_threads()
        small, large, tiny_chunk = (peak_memory_mb(k, c, device, threads) for k, c in
                                    ((1000, 128), (4000, 128), (1000, 16)))
        ratio = large / max(small, 1e-3)
        rows.append(row("fisher", f"peak mem N=4000/1000, chunk 128 ({large:.0f}/{small:.0f}MB)", ratio,
                        "<= 1.5", ratio <= 1.5))
        ratio = tiny_chunk / max(small, 1e-3)
        rows.append(row("fisher", f"peak mem chunk 16/128, N=1000 ({tiny_chunk:.0f}MB)", ratio, "< 1", ratio < 1))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="64 inputs, 1 repeat: checks that it works")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(format_table(run(args.tiny, args.device)))


if __name__ == "__main__":
    main()
