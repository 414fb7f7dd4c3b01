"""The behaviour table of the gradient-constraint methods (gpm, ogd, agem) against naive, on the real MNIST
test images (../shared/data/mnist-t10k: 8,000 training / 2,000 test images, bench/common.py `mnist_like`),
Split MNIST in 5 experiences, MLP 784-400-400, plain SGD (lr 0.05, no momentum: the projections act on the
update itself, as in the three papers), batch 128, EPOCHS epochs per experience, two seeds, every method at
its config's defaults (gpm threshold 0.97 on 300 inputs; ogd 100 directions per experience; agem 100 samples
per experience, memory batch = the training batch, 128):

1. task-IL (a shared head masked to each experience's classes): gpm, ogd and agem each above naive (final
   average accuracy, every seed);
2. class-IL: agem above naive (gpm and ogd are not expected to be: nothing in their constraints separates the
   new classes from the old ones).

    python -m bench.constraints_table [--seeds 0 1] [--tiny]

Prints markdown tables (means over the seeds, each seed in brackets), each method's memory as results.json
records it, and whether each claim holds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.boundary_free_table import DATA, fmt, quiet, run

EPOCHS = 4
COMMON = [*DATA, "scenario.n_experiences=5", "model.hidden=[400,400]", "optimizer=sgd", "optimizer.lr=0.05",
          "train.batch_size=128", "train.val_fraction=0", f"train.epochs={EPOCHS}", "logger=none", "plots=false",
          "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]
SETTINGS = {
    "task-IL": (["scenario.incremental=task"], ["naive", "gpm", "ogd", "agem"], ["gpm", "ogd", "agem"]),
    "class-IL": (["scenario.incremental=class"], ["naive", "gpm", "ogd", "agem"], ["agem"]),
}


def memory(state: dict | None) -> str:
    if not state:
        return "-"
    if "basis_sizes" in state:
        return f"bases {state['basis_sizes'][-1]} of {state['dims']}, {state['bytes'] / 1e6:.2f} MB"
    if "directions" in state:
        return f"{sum(state['directions'])} directions × {state['floats_per_direction']:,} floats, " \
               f"{state['bytes'] / 1e6:.0f} MB"
    return f"{state['memory_samples']} samples, {state['bytes'] / 1e6:.2f} MB"


def table(seeds: list[int], tiny: bool, out: Path, log, only=None, own=None) -> tuple[list[str], bool]:
    lines, ok = [], True
    extra = ["train.epochs=1", "train.iterations=3", "scenario.n_experiences=2", "method.memory_per_experience=5"] \
        if tiny else []
    for name, (overrides, methods, claims) in SETTINGS.items():
        lines += [f"**{name}** (final average accuracy; mean over seeds {seeds}, each seed in brackets)", "",
                  "| method | average accuracy | forgetting | memory at the end (results.json method_state) | "
                  "seconds | above naive (every seed) |", "| --- | --- | --- | --- | --- | --- |"]
        got = {}
        for method in [m for m in methods if only is None or m in only]:
            values, forgetting, seconds, state = [], [], [], None
            for seed in seeds:
                t0 = time.perf_counter()
                mine = [o for o in extra if not o.startswith("method.") or method in ("ogd", "agem")]
                r = run([*COMMON, *overrides, f"method={method}", *(own or {}).get(method, []), f"seed={seed}", *mine],
                        out / f"{name}-{method}-{seed}")
                seconds.append(time.perf_counter() - t0)
                values.append(r["metrics"]["avg_acc"])
                forgetting.append(r["metrics"]["forgetting"])
                state = r.get("method_state")
                log(f"{name} {method} seed {seed}: {values[-1]:.4f} ({seconds[-1]:.0f} s)")
            got[method] = values
            above = ""
            if method != "naive":
                holds = all(v > n for v, n in zip(values, got["naive"]))
                above = ("yes" if holds else "**no**") + ("" if method in claims else " (not claimed)")
                ok &= holds or method not in claims
            lines.append(f"| {method} | {fmt(values)} | {fmt(forgetting)} | {memory(state)} | "
                         f"{statistics.mean(seconds):.0f} | {above} |")
        lines.append("")
    return lines, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 2 experiences, a few steps")
    parser.add_argument("--out", default=None, help="keep the run folders here")
    parser.add_argument("--methods", nargs="*", default=None, help="only these methods (naive always needed)")
    parser.add_argument("--gpm-threshold", type=float, default=None, help="method.threshold of gpm")
    args = parser.parse_args(argv)
    import torch

    from bench.common import SHARED_MNIST

    torch.set_num_threads(min(2, torch.get_num_threads()))
    quiet()
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        print(f"note: {SHARED_MNIST} is missing: random MNIST-shaped data stands in (the numbers mean nothing)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        own = {"gpm": [f"method.threshold={args.gpm_threshold}"]} if args.gpm_threshold else {}
        lines, ok = table(args.seeds, args.tiny, Path(args.out) if args.out else Path(tmp), log, args.methods, own)
    print("\n".join(lines))
    print(f"every claim holds: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
