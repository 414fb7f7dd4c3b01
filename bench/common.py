"""Shared pieces of the benchmarks: MNIST-like data, timing, the result table."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

from clexp.data.arrays import read_idx
from clexp.data.base import SourceData

# the 10k real MNIST test images (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz): the folder that
# CLEXP_MNIST_T10K names, else data/mnist-t10k in the checkout
MNIST_T10K = Path(os.environ.get("CLEXP_MNIST_T10K") or Path(__file__).resolve().parents[1] / "data" / "mnist-t10k")
_warned = False


def mnist_like(synthetic_n: int = 10_000, seed: int = 0) -> SourceData:
    """The real MNIST test images (80/20 split) when MNIST_T10K has them, else random MNIST-shaped data."""
    g = torch.Generator().manual_seed(seed)
    if (MNIST_T10K / "t10k-images-idx3-ubyte.gz").exists():
        x = torch.from_numpy(read_idx(MNIST_T10K / "t10k-images-idx3-ubyte.gz")).float().div(255).unsqueeze(1)
        y = torch.from_numpy(read_idx(MNIST_T10K / "t10k-labels-idx1-ubyte.gz")).long()
        name = "mnist-t10k"
    else:
        global _warned
        if not _warned:  # once per process: the numbers of a benchmark on random data mean nothing
            print(f"bench: no MNIST images in {MNIST_T10K} (set CLEXP_MNIST_T10K to their folder): random "
                  "MNIST-shaped data stands in", file=sys.stderr)
            _warned = True
        x = torch.rand(synthetic_n, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (synthetic_n,), generator=g)
        name = "synthetic-mnist"
    perm = torch.randperm(len(y), generator=g)
    n_train = int(0.8 * len(y))
    tr, te = perm[:n_train], perm[n_train:]
    x = (x - x[tr].mean()) / x[tr].std()
    return SourceData(name, x[tr], y[tr], x[te], y[te], 10)


def load_bench_data(**_ignored) -> SourceData:
    """A Hydra `_target_` for the benchmarks' runs (dataset._target_=bench.common.load_bench_data)."""
    return mnist_like()


SPLIT_MNIST_SIZE = (60_000, 10_000)


def split_mnist_size() -> SourceData:
    """Inputs like MNIST at the size of Split MNIST (60,000 training and 10,000 test images): the
    `mnist_like` images repeated to that size (its train and test images stay disjoint)."""
    data = mnist_like()

    def tile(x, y, n):
        idx = torch.arange(n) % len(y)
        return x[idx], y[idx]

    (x_train, y_train), (x_test, y_test) = (tile(data.x_train, data.y_train, SPLIT_MNIST_SIZE[0]),
                                            tile(data.x_test, data.y_test, SPLIT_MNIST_SIZE[1]))
    return SourceData(f"{data.name}, Split-MNIST size", x_train, y_train, x_test, y_test, 10)


def load_split_mnist_size(**_ignored) -> SourceData:
    """Hydra `_target_` of `split_mnist_size`."""
    return split_mnist_size()


def median_time(fn, repeats: int = 3, warmup: int = 0) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(bench: str, case: str, ratio: float, target: str, ok: bool, seconds: float | None = None, **extra) -> dict:
    return {"bench": bench, "case": case, "ratio": ratio, "target": target, "ok": ok, "seconds": seconds, **extra}


def format_table(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<12} {'case':<44} {'ratio':>8} {'target':>10} {'ok':>4} {'seconds':>9}"]
    for r in rows:
        secs = "" if r.get("seconds") is None else f"{r['seconds']:.3f}"
        lines.append(f"{r['bench']:<12} {r['case']:<44} {r['ratio']:>8.3f} {r['target']:>10} "
                     f"{'yes' if r['ok'] else 'NO':>4} {secs:>9}")
    return "\n".join(lines)


def cli(run, doc: str, argv=None) -> None:
    """The command line every benchmark script shares: --tiny, --device; prints the table."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    print(format_table(run(args.tiny, args.device)))
