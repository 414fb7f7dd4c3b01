"""`python -m bench.select_defaults [--quick]`: each method's default strength, chosen on validation data.

The stream is the default one (Split Digits, 5 experiences, the MLP of conf/model/mlp.yaml, batch 32),
in task-IL and domain-IL, under the three training setups of SETUPS:

- `default`: conf/config.yaml's own (SGD lr 0.05, 5 epochs per experience);
- `1 epoch`: the same with `train.epochs=1` (a short run, where the first model is still uncertain and
  its Fisher large: a strong quadratic penalty can make SGD unstable there);
- `forgetting`: SGD lr 0.2 for 10 epochs, a setup in which fine-tuning forgets in task-IL as well as in
  domain-IL (at the default lr it forgets nothing in task-IL).

A default must help where there is forgetting and harm nowhere: one strength per method for all three.

1. Validation: clexp's own validation split, `train.val_fraction=0.2` (a seeded, class-stratified 20 %
   of each experience's training images, never trained on); the score reads `val_metrics` only. Every
   method and strength of GRID, and naive, run over VAL_SEEDS in task- and domain-IL under every setup;
   a cell is the mean final validation average accuracy over the seeds. A strength is admissible when
   no run diverges (NaN / inf) and no cell falls more than HARM below naive's. The default is the
   admissible strength with the best score, the mean of all its cells: one strength serves every
   setup, so every setup counts (naive forgets in domain-IL under all three, in task-IL under `forgetting`).
2. Test: naive and every method at its chosen strength as a user runs it (conf/config.yaml's
   `train.val_fraction`, the test split's `metrics`), mean (± std) over TEST_SEEDS of the average
   accuracy and the forgetting, per setup; beside each forgetting, on how many seeds it is below naive's
   on the same seed (same initial weights and batches: a paired comparison, "3/3").

Prints the validation grid and the test tables in markdown. `--quick` (one seed, two strengths per
method, the `1 epoch` setup only) is the smoke mode of tests/test_select_defaults.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from itertools import count
from pathlib import Path

import torch

# name: overrides (the model and the batch are the defaults)
SETUPS = {
    "default": [],
    "1 epoch": ["train.epochs=1"],
    "forgetting": ["optimizer.lr=0.2", "train.epochs=10"],
}
QUICK_SETUPS = {"1 epoch": ["train.epochs=1"]}  # --quick: a smoke run of the procedure, not a selection
HARM = 0.01  # the most a default may lose to naive (validation average accuracy) in any cell
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "plots=false", "trainer.accelerator=cpu"]
SCENARIOS = ("task", "domain")
VAL_FRACTION = 0.2
VAL_SEEDS = (0, 1)
TEST_SEEDS = (0, 1, 2)

# method: (strength key, log-spaced grid around its plausible scale)
GRID = {
    # finer between 30 and 100: SGD's stability limit (lr·λ·max F < 2) lies there in the 1-epoch setup
    "ewc": ("lam", [3, 10, 30, 50, 60, 70, 100]),
    "online_ewc": ("lam", [1, 3, 10, 30, 100]),
    "si": ("c", [0.1, 0.3, 1, 3, 10]),
    "mas": ("lam", [0.003, 0.01, 0.03, 0.1, 0.3]),
    "l2": ("lam", [0.01, 0.03, 0.1, 0.3, 1, 3]),
    "lwf": ("lam", [0.1, 0.3, 1, 3]),
    "kfac_ewc": ("lam", [0.1, 0.3, 1, 3, 10]),
    "ewcpp": ("lam", [1, 3, 10, 30, 100]),
    # the paper form's scores are loss changes per unit of KL summed over the intervals: ~1e3 here
    "rwalk": ("lam", [1e-6, 3e-6, 1e-5, 3e-5, 1e-4]),
}
QUICK_GRID = {method: (key, [values[0], values[-1]]) for method, (key, values) in GRID.items()}
_RUNS = count()  # run folder numbers


def run_one(out: Path, method: str, key: str | None, value: float | None, incremental: str, seed: int,
            validation: bool, setup: list[str]) -> dict | None:
    """(avg_acc, forgetting) of one run under the overrides `setup`, or None when it went NaN / inf."""
    import clexp
    from clexp.callbacks.finite_guard import NonFiniteError

    overrides = [*QUIET, *setup, f"method={method}", f"scenario.incremental={incremental}", f"seed={seed}",
                 f"name=select-{method}-{incremental}-s{seed}"]
    if key is not None:
        overrides.append(f"method.{key}={value}")
    if validation:
        overrides.append(f"train.val_fraction={VAL_FRACTION}")
    run_dir = out / f"{next(_RUNS):04d}-{'val' if validation else 'test'}-{method}-{incremental}-s{seed}"
    overrides.append(f"hydra.run.dir={run_dir}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the runs' own lines (model summary)
            results = clexp.run(overrides=overrides)
    except NonFiniteError:
        return None
    metrics = results["val_metrics"] if validation else results["metrics"]  # validation never reads test
    return {"avg_acc": metrics["avg_acc"], "forgetting": metrics["forgetting"]}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def fmt(value: float) -> str:
    return f"{value:g}"


def validation_grid(out: Path, grid: dict, seeds: tuple[int, ...], setups: dict, progress
                    ) -> tuple[list[str], dict]:
    """The markdown table of the validation accuracies (one column per setup and scenario, mean over
    seeds; naive first), each strength's score, and the chosen strength of every method (module docstring)."""
    columns = [(name, inc) for name in setups for inc in SCENARIOS]

    def cells_of(method, key, value) -> list[float | None]:
        runs = {c: [run_one(out, method, key, value, c[1], s, True, setups[c[0]]) for s in seeds] for c in columns}
        progress(f"val {method}" + ("" if key is None else f" {key}={fmt(value)}"))
        return [None if any(r is None for r in rs) else statistics.mean(r["avg_acc"] for r in rs)
                for rs in runs.values()]

    def show(cells):
        return " | ".join("diverged" if c is None else f"{c:.3f}" for c in cells)

    lines = ["| method | strength | " + " | ".join(f"{name}, {inc}-IL" for name, inc in columns) + " | score | |",
             "| --- | --- |" + " --- |" * len(columns) + " --- | --- |"]
    naive = cells_of("naive", None, None)
    lines.append(f"| naive | — | {show(naive)} | | reference |")
    chosen = {}
    for method, (key, values) in grid.items():
        rows = {value: cells_of(method, key, value) for value in values}
        score, note = {}, {}
        for value, cells in rows.items():
            harmed = [f"{name}, {inc}" for (name, inc), c, ref in zip(columns, cells, naive)
                      if c is not None and ref is not None and c < ref - HARM]
            if any(c is None for c in cells):
                note[value] = "diverged"
            elif harmed:
                note[value] = "harms " + "; ".join(harmed)
            else:
                score[value] = statistics.mean(cells)
        best = max(score, key=score.get) if score else None
        chosen[method] = (key, best if best is not None else min(values))
        for value, cells in rows.items():
            mark = "**chosen**" if value == best else note.get(value, "")
            shown = f"{score[value]:.3f}" if value in score else "—"
            lines.append(f"| {method} | {key}={fmt(value)} | {show(cells)} | {shown} | {mark} |")
        if best is None:
            lines.append(f"| {method} | no admissible strength: the smallest, {key}={fmt(min(values))}, is kept | "
                         + " | " * len(columns) + " | |")
    return lines, chosen


def test_table(out: Path, chosen: dict, seeds: tuple[int, ...], setup: list[str], progress) -> list[str]:
    """Naive and every method at its chosen strength on the test split: avg accuracy and forgetting, with
    the number of seeds on which the forgetting is below naive's (k/n)."""
    head = "| method | strength | " + " | ".join(f"{inc}-IL acc | {inc}-IL forgetting" for inc in SCENARIOS) + " |"
    lines = [head, "| --- | --- |" + " --- | --- |" * len(SCENARIOS)]
    naive: dict[str, list] = {}
    for method, (key, value) in {"naive": (None, None), **chosen}.items():
        cells = []
        for inc in SCENARIOS:
            runs = [run_one(out, method, key, value, inc, s, False, setup) for s in seeds]
            if method == "naive":
                naive[inc] = runs
            if any(r is None for r in runs):
                cells += ["diverged", "diverged"]
                continue
            forgetting = mean_std([r["forgetting"] for r in runs])
            if method != "naive" and all(r is not None for r in naive[inc]):  # paired: the same seed's naive run
                below = sum(r["forgetting"] < ref["forgetting"] for r, ref in zip(runs, naive[inc]))
                forgetting += f" ({below}/{len(runs)})"
            cells += [mean_std([r["avg_acc"] for r in runs]), forgetting]
        progress(f"test {method} {' '.join(setup)}")
        strength = "—" if key is None else f"{key}={fmt(value)}"
        lines.append(f"| {method} | {strength} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, two strengths per method (a smoke run)")
    parser.add_argument("--only", nargs="*", default=None, help="methods to sweep (default: all of GRID)")
    parser.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # LwF's frozen teacher
    grid = QUICK_GRID if args.quick else GRID
    grid = {m: grid[m] for m in (args.only or grid)}
    setups = QUICK_SETUPS if args.quick else SETUPS
    val_seeds, test_seeds = ((0,), (0,)) if args.quick else (VAL_SEEDS, TEST_SEEDS)
    t0 = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {message}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        grid_lines, chosen = validation_grid(out, grid, val_seeds, setups, progress)
        described = "; ".join(f"{name}: {' '.join(o) or 'conf/config.yaml'}" for name, o in setups.items())
        print(f"## Validation (train.val_fraction={VAL_FRACTION}, val_metrics; seeds "
              f"{', '.join(map(str, val_seeds))}; {described})\n")
        print("\n".join(grid_lines))
        for name, setup in setups.items():
            print(f"\n## Test, {name} ({' '.join(setup) or 'conf/config.yaml'}; seeds "
                  f"{', '.join(map(str, test_seeds))}; mean ± std)\n")
            print("\n".join(test_table(out, chosen, test_seeds, setup, progress)))
    print(f"\n{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
