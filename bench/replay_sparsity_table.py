"""The behaviour table of experience replay and PackNet, on the real MNIST test images
(bench/common.py `mnist_like`: 8,000 training / 2,000 test images), Split MNIST
in 5 experiences, MLP 784-400-400, Adam lr 1e-3, batch 128, 4 epochs per experience, two seeds:

1. task-IL (a shared head masked to each experience's classes): `packnet` and `er` each above `naive`
   (final average accuracy);
2. class-IL: `er` above `naive` (the quadratic regularizers are not expected to be; `ewc +replay=er` shown too).

Each method at its config's defaults (packnet: prune_fraction 0.75, retrain_epochs 1; er: buffer_size 200,
replay batch = the training batch); nothing was tuned for this table. Also `experiment=stable_sgd` (naive in
the Stable SGD regime: dropout 0.5, SGD 0.04·0.4^i, momentum 0.8, batch 16, 5 epochs) on the same stream, for
reference (no claim).

    python -m bench.replay_sparsity_table [--seeds 0 1] [--tiny] [--no-stable]

Prints markdown tables (means over the seeds, each seed's value in brackets) and whether each claim holds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.boundary_free_table import COMMON, DATA, quiet, run

EPOCHS = 4
SETTINGS = {
    "task-IL": (["scenario.incremental=task", f"train.epochs={EPOCHS}"],
                {"naive": ["method=naive"], "packnet": ["method=packnet"], "er": ["method=er"]},
                ("packnet", "er")),
    "class-IL": (["scenario.incremental=class", f"train.epochs={EPOCHS}"],
                 {"naive": ["method=naive"], "er": ["method=er"], "ewc": ["method=ewc", "method.lam=30"],
                  "ewc +replay=er": ["method=ewc", "method.lam=30", "+replay=er"]},  # the docs' table's λ
                 ("er",)),
}
STABLE = {"stable_sgd (naive)": ["experiment=stable_sgd", *DATA, "scenario.n_experiences=5", "model.hidden=[400,400]",
                                 "train.val_fraction=0", "logger=none", "plots=false",
                                 "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]}


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} [{', '.join(f'{v:.3f}' for v in values)}]"


def table(seeds: list[int], tiny: bool, out: Path, log, stable: bool = True) -> tuple[list[str], bool]:
    lines, ok_all = [], True
    extra = ["train.epochs=1", "train.iterations=4", "scenario.n_experiences=2"] if tiny else []
    for name, (overrides, methods, claims) in SETTINGS.items():
        lines += [f"**{name}** (final average accuracy; mean over seeds {seeds}, each seed in brackets)", "",
                  "| method | average accuracy | forgetting | memory (samples / bytes) | capacity left | seconds "
                  "| above naive (every seed) |", "| --- | --- | --- | --- | --- | --- | --- |"]
        got = {}
        for method, options in methods.items():
            values, forgetting, seconds, memory, capacity = [], [], [], "-", "-"
            for seed in seeds:
                t0 = time.perf_counter()
                r = run([*COMMON, *overrides, *options, f"seed={seed}", *extra],
                        out / f"{name}-{''.join(c if c.isalnum() else '_' for c in method)}-{seed}")
                seconds.append(time.perf_counter() - t0)
                values.append(r["metrics"]["avg_acc"])
                forgetting.append(r["metrics"]["forgetting"] or 0.0)
                if r.get("memory"):
                    memory = f"{r['memory']['samples']} / {r['memory']['bytes']:,}"
                if r.get("packnet"):
                    capacity = ", ".join(f"{c:.2f}" for c in r["packnet"]["capacity_left"])
                log(f"{name} {method} seed {seed}: {values[-1]:.4f} ({seconds[-1]:.0f} s)")
            got[method] = values
            above = ""
            if method in claims:
                holds = all(v > n for v, n in zip(values, got["naive"]))
                ok_all &= holds
                above = "yes" if holds else "**no**"
            lines.append(f"| {method} | {fmt(values)} | {fmt(forgetting)} | {memory} | {capacity} | "
                         f"{statistics.mean(seconds):.0f} | {above} |")
        lines.append("")
    if stable:
        for name, options in STABLE.items():
            for inc in ("task", "class"):
                values = []
                for seed in seeds:
                    tiny_extra = ["train.epochs=1", "train.iterations=4", "scenario.n_experiences=2"] if tiny else []
                    r = run([*options, f"scenario.incremental={inc}", f"seed={seed}", *tiny_extra],
                            out / f"stable-{inc}-{seed}")
                    values.append(r["metrics"]["avg_acc"])
                    log(f"{name} {inc} seed {seed}: {values[-1]:.4f}")
                lines.append(f"{name}, {inc}-IL: final average accuracy {fmt(values)}")
        lines.append("")
    return lines, ok_all


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 2 experiences, a few steps")
    parser.add_argument("--no-stable", action="store_true", help="leave out the experiment=stable_sgd rows")
    parser.add_argument("--out", default=None, help="keep the run folders here")
    args = parser.parse_args(argv)
    import torch

    from bench.common import MNIST_T10K

    torch.set_num_threads(min(2, torch.get_num_threads()))
    quiet()
    if not (MNIST_T10K / "t10k-images-idx3-ubyte.gz").exists():
        print(f"note: {MNIST_T10K} is missing: random MNIST-shaped data stands in (the numbers mean nothing)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        lines, ok = table(args.seeds, args.tiny, out, log, stable=not args.no_stable)
    print("\n".join(lines))
    print(f"every claim holds: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
