"""The behaviour table of importance without boundaries, on the real MNIST test images
(bench/common.py `mnist_like`: 8,000 training / 2,000 test images), Split
MNIST in 5 experiences, MLP 784-400-400, Adam lr 1e-3, batch 128, two seeds, each method at the
strength of STRENGTHS (chosen on a validation split — 10 % of each experience's training images, seed 0,
the score the quantity of the claim — over the grids of GRIDS: `--select` reruns that selection and
prints its table; the task-free strengths are those of the sharp stream, used unchanged when blurred):

1. task-IL, with boundaries, 4 epochs per experience: `rwalk` and `ewcpp` each above `naive` (final
   average accuracy);
2. task-free domain-IL, one continuous run of as many steps (no boundary events; consolidation every
   `method.consolidate_every` steps): `si`, `ewcpp` and `rwalk` keep more of experience 0 at the end than
   `naive` (the last row's accuracy on experience 0);
3. the same task-free run with blurry boundaries (`scenario.boundaries=blurry scenario.blur=0.2`): the
   same comparison.

Optionally (`--avalanche`) the reference preset `experiment=rwalk_split_mnist` (multi-head MLP 2×256,
Adam 1e-3, batch 64, 10 epochs, λ 0.1, α 0.9, Δt 10) on the same images, beside Avalanche's 0.99.

    python -m bench.boundary_free_table [--seeds 0 1] [--avalanche] [--tiny]

Prints markdown tables (means over the seeds, each seed's value in brackets) and whether each claim holds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

DATA = ["dataset._target_=bench.common.load_bench_data", "dataset.name=mnist-t10k"]
COMMON = [*DATA, "scenario.n_experiences=5", "model.hidden=[400,400]", "optimizer=adam", "optimizer.lr=0.001",
          "train.batch_size=128", "train.val_fraction=0", "logger=none", "plots=false",
          "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]
EPOCHS = 4
STEPS = 5 * EPOCHS * 13  # 1,600 images per experience / 128 = 13 steps per epoch: the same steps without boundaries

SETTINGS = {
    "task-IL, boundaries": (["scenario.incremental=task", f"train.epochs={EPOCHS}"], ["naive", "ewcpp", "rwalk"],
                            "avg_acc"),
    "task-free, domain-IL": (["scenario.incremental=domain", "scenario.task_free=true", f"train.iterations={STEPS}"],
                             ["naive", "si", "ewcpp", "rwalk"], "exp0"),
    "task-free, domain-IL, blurry 0.2": (["scenario.incremental=domain", "scenario.task_free=true",
                                          f"train.iterations={STEPS}", "scenario.boundaries=blurry",
                                          "scenario.blur=0.2"], ["naive", "si", "ewcpp", "rwalk"], "exp0"),
}
# setting → method → strength overrides (from `--select`: the best validation score of GRIDS)
STRENGTHS = {
    "task-IL, boundaries": {"ewcpp": ["method.lam=30000"], "rwalk": ["method.lam=0.001"]},
    "task-free, domain-IL": {"si": ["method.c=10000"], "ewcpp": ["method.lam=300000", "method.alpha=0.1"],
                             "rwalk": ["method.lam=0.01"]},
}
STRENGTHS["task-free, domain-IL, blurry 0.2"] = STRENGTHS["task-free, domain-IL"]
GRIDS = {
    "task-IL, boundaries": {"ewcpp": [[f"method.lam={v}"] for v in (30, 300, 3000, 30000)],
                            "rwalk": [[f"method.lam={v}"] for v in (1e-4, 1e-3, 1e-2)]},
    "task-free, domain-IL": {
        "si": [[f"method.c={v}"] for v in (1, 10, 100, 1000, 10000)],
        "ewcpp": [[f"method.lam={v}", f"method.alpha={a}"] for a in (0.9, 0.1) for v in (30, 3000, 30000, 300000)],
        "rwalk": [[f"method.lam={v}"] for v in (1e-4, 1e-3, 1e-2, 1e-1)]},
}
AVALANCHE = ["experiment=rwalk_split_mnist", *DATA, "logger=none", "plots=false", "trainer.enable_progress_bar=false",
             "trainer.accelerator=cpu"]


def run(overrides: list[str], folder: Path) -> dict:
    import clexp

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return clexp.run([*overrides, f"hydra.run.dir={folder}"])


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "clexp"):
        logging.getLogger(name).setLevel(logging.ERROR)


def value(results: dict, what: str) -> float:
    return results["metrics"]["avg_acc"] if what == "avg_acc" else results["acc_matrix"][-1][0]


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} [{', '.join(f'{v:.3f}' for v in values)}]"


def table(seeds: list[int], tiny: bool, out: Path, log) -> list[str]:
    lines = []
    for name, (overrides, methods, what) in SETTINGS.items():
        extra = ["train.epochs=1", "train.iterations=20" if "task-free" in name else "train.iterations=4",
                 "scenario.n_experiences=2"] if tiny else []
        measure = "final average accuracy" if what == "avg_acc" else "accuracy on experience 0 at the end"
        lines += [f"**{name}** ({measure}; mean over seeds {seeds}, each seed in brackets)", "",
                  "| method | strength | value | average accuracy | steps | seconds | above naive (every seed) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        got = {}
        for method in methods:
            values, averages, seconds, steps = [], [], [], None
            for seed in seeds:
                t0 = time.perf_counter()
                strength = STRENGTHS[name].get(method, [])
                r = run([*COMMON, *overrides, f"method={method}", *strength, f"seed={seed}", *extra],
                        out / f"{name.replace(' ', '_').replace(',', '')}-{method}-{seed}")
                seconds.append(time.perf_counter() - t0)
                values.append(value(r, what))
                averages.append(r["metrics"]["avg_acc"])
                steps = sum(r["compute"]["optimizer_steps"])
                log(f"{name} {method} seed {seed}: {values[-1]:.4f} ({seconds[-1]:.0f} s)")
            got[method] = values
            above = "" if method == "naive" else \
                ("yes" if all(v > n for v, n in zip(values, got["naive"])) else "**no**")
            shown = " ".join(o.split(".", 1)[1] for o in STRENGTHS[name].get(method, [])) or "-"
            lines.append(f"| {method} | {shown} | {fmt(values)} | {fmt(averages)} | {steps} | "
                         f"{statistics.mean(seconds):.0f} | {above} |")
        lines.append("")
    return lines


def select(tiny: bool, out: Path, log) -> list[str]:
    """The validation grid: seed 0, train.val_fraction=0.1, each setting's claim read on validation."""
    lines = ["**Selection on validation** (seed 0, 10 % of each experience's training images held out)", "",
             "| setting | method | strength | validation value | validation average accuracy |",
             "| --- | --- | --- | --- | --- |"]
    for name, grid in GRIDS.items():
        overrides, _, what = SETTINGS[name]
        extra = ["train.epochs=1", "train.iterations=20" if "task-free" in name else "train.iterations=4",
                 "scenario.n_experiences=2"] if tiny else []
        for method, options in {"naive": [[]], **grid}.items():
            for k, option in enumerate(options):
                r = run([*COMMON, *overrides, "train.val_fraction=0.1", f"method={method}", *option, "seed=0", *extra],
                        out / f"select-{name.replace(' ', '_').replace(',', '')}-{method}-{k}")
                rows = r["val_acc_matrix"]
                v = sum(rows[-1]) / len(rows[-1]) if what == "avg_acc" else rows[-1][0]
                log(f"select {name} {method} {option}: {v:.4f}")
                lines.append(f"| {name} | {method} | {' '.join(option) or '-'} | {v:.3f} | "
                             f"{sum(rows[-1]) / len(rows[-1]):.3f} |")
    return [*lines, ""]


def avalanche(tiny: bool, out: Path, log) -> list[str]:
    extra = ["train.epochs=1", "train.iterations=4"] if tiny else []
    t0 = time.perf_counter()
    r = run([*AVALANCHE, *extra], out / "rwalk_split_mnist")
    seconds = time.perf_counter() - t0
    log(f"rwalk_split_mnist: {r['metrics']['avg_acc']:.4f} ({seconds:.0f} s)")
    return ["**experiment=rwalk_split_mnist** (Avalanche's reproduced RWalk baseline, task-IL, multi-head MLP 2×256, "
            "Adam 1e-3, batch 64, 10 epochs, λ 0.1, α 0.9, Δt 10, `method.variant=code`; seed 0)", "",
            "| | final average accuracy |", "| --- | --- |",
            f"| clexp, 8,000 MNIST-t10k training images ({seconds:.0f} s) | {r['metrics']['avg_acc']:.3f} |",
            "| Avalanche, 60,000 MNIST training images (reported) | 0.99 |", ""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--avalanche", action="store_true", help="also run experiment=rwalk_split_mnist")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 2 experiences, a few steps")
    parser.add_argument("--select", action="store_true", help="only the selection of STRENGTHS on validation")
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
        if args.select:
            print("\n".join(select(args.tiny, out, log)))
            return 0
        lines = table(args.seeds, args.tiny, out, log)
        if args.avalanche:
            lines += avalanche(args.tiny, out, log)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
