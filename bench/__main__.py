"""`python -m bench [--tiny] [--device cpu|cuda] [--only NAME ...]`: every benchmark, one table.

Each benchmark module exposes `run(tiny, device) -> rows`; ratios are measured side by side in one
process. `--tiny` is the smoke mode CI runs: it checks that the scripts work, not the speed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from bench.common import format_table

BENCHMARKS = ("bench_overhead", "bench_process", "bench_penalty", "bench_fisher", "bench_ngd", "bench_kfac",
              "bench_augment", "bench_data", "bench_pretrained",
              "bench_ewcpp", "bench_constraints", "bench_er")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run of every benchmark")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark module names to run")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = []
    for name in args.only or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"bench.{name}":
                continue  # not written yet
            raise
        rows += module.run(tiny=args.tiny, device=args.device)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
