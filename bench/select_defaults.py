"""`python -m bench.select_defaults [--quick]`: each method's default strength, chosen on validation data.

The stream is the default one (Split Digits, 5 experiences, the MLP of conf/model/mlp.yaml), in
task-IL and domain-IL, under SETUP: SGD at lr 0.2 for 10 epochs per experience (batch 32), a training
setup in which fine-tuning forgets in both (conf/config.yaml's own, lr 0.05 for 5 epochs, forgets
nothing in task-IL). tests/test_methods_behaviour.py checks the chosen defaults in the same setup.

1. Validation: each experience trains on 80 % of its training images; the other 20 % (a seeded,
   class-stratified hold-out of digits' training split, drawn again for every seed) stand in for
   its test set. The test images are never read. For every method and strength of GRID, the mean
   final average accuracy over VAL_SEEDS and over task- and domain-IL is its score; the strength
   with the best score is the method's default (one per method: a config has one default). A
   strength that goes NaN / inf in any run is marked diverged and never chosen.
2. Test: naive and every method at its chosen strength, on the real stream (all training images,
   the test split), mean (± std) over TEST_SEEDS of the average accuracy and the forgetting.
3. The chosen strengths on conf/config.yaml's own training setup, domain-IL (the issue's check:
   a default must not harm the default experiment).

Prints the validation grid and the tables in markdown. `--quick` (one seed, two strengths per
method, 3 epochs, no step 3; under 2 minutes) is the smoke mode of tests/test_select_defaults.py.
The full run: 256 runs, 15 minutes on one core of a busy 2-core machine (895 s measured).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from itertools import count
from pathlib import Path

import torch

from clexp.data.base import SourceData, declared

# the training setup in which naive forgets in task- and domain-IL (conf/config.yaml: lr 0.05 and 5 epochs,
# where fine-tuning forgets nothing in task-IL); the default model ([400, 400] MLP) and batch (32)
SETUP = ["optimizer.lr=0.2", "train.epochs=10"]
QUICK_SETUP = ["optimizer.lr=0.2", "train.epochs=3"]  # --quick: a smoke run of the procedure, not a selection
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "plots=false", "trainer.accelerator=cpu"]
SCENARIOS = ("task", "domain")
VAL_SEEDS = (0, 1)
TEST_SEEDS = (0, 1, 2)

# method: (strength key, log-spaced grid around its plausible scale)
GRID = {
    "ewc": ("lam", [1, 3, 10, 30, 100, 300]),
    "online_ewc": ("lam", [1, 3, 10, 30, 100, 300]),
    "si": ("c", [0.01, 0.03, 0.1, 0.3, 1, 3]),
    "mas": ("lam", [0.003, 0.01, 0.03, 0.1, 0.3, 1]),
    "l2": ("lam", [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]),
    "lwf": ("lam", [0.1, 0.3, 1, 3]),
    "kfac_ewc": ("lam", [0.03, 0.1, 0.3, 1, 3, 10]),
}
QUICK_GRID = {method: (key, [values[0], values[-1]]) for method, (key, values) in GRID.items()}
_RUNS = count()  # run folder numbers


def digits_validation(test_fraction: float = 0.2, seed: int = 0, name: str = "digits",
                      n_classes: int | None = None, val_fraction: float = 0.2, val_seed: int = 0) -> SourceData:
    """Digits' training split (the same as clexp.data.digits.load_digits), cut in two: a seeded,
    class-stratified `val_fraction` of it is returned as the "test" split, the rest as the training
    split, standardised with the rest's mean and std. Digits' test split is left out."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    idx_train, _ = train_test_split(torch.arange(len(y)).numpy(), test_size=test_fraction, random_state=seed,
                                    stratify=y.numpy())
    idx_fit, idx_val = train_test_split(idx_train, test_size=val_fraction, random_state=val_seed,
                                        stratify=y.numpy()[idx_train])
    idx_fit, idx_val = torch.as_tensor(idx_fit), torch.as_tensor(idx_val)
    mean, std = x[idx_fit].mean(), x[idx_fit].std()
    x = (x - mean) / std
    data = SourceData("digits-validation", x[idx_fit], y[idx_fit], x[idx_val], y[idx_val], n_classes=10)
    return declared(data, f"{name}-validation", n_classes)


def run_one(out: Path, method: str, key: str | None, value: float | None, incremental: str, seed: int,
            validation: bool, setup: list[str] | None = None) -> dict | None:
    """(avg_acc, forgetting) of one run (training setup: SETUP unless given), or None when it went NaN / inf."""
    import clexp
    from clexp.callbacks.finite_guard import NonFiniteError

    overrides = [*QUIET, *(SETUP if setup is None else setup), f"method={method}",
                 f"scenario.incremental={incremental}", f"seed={seed}", f"name=select-{method}-{incremental}-s{seed}"]
    if key is not None:
        overrides.append(f"method.{key}={value}")
    if validation:
        overrides += ["dataset._target_=bench.select_defaults.digits_validation", f"+dataset.val_seed={seed}"]
    run_dir = out / f"{next(_RUNS):04d}-{'val' if validation else 'test'}-{method}-{incremental}-s{seed}"
    overrides.append(f"hydra.run.dir={run_dir}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the runs' own lines (model summary)
            metrics = clexp.run(overrides=overrides)["metrics"]
    except NonFiniteError:
        return None
    return {"avg_acc": metrics["avg_acc"], "forgetting": metrics["forgetting"]}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def fmt(value: float) -> str:
    return f"{value:g}"


def validation_grid(out: Path, grid: dict, seeds: tuple[int, ...], progress,
                    setup: list[str] | None = None) -> tuple[list[str], dict]:
    """The markdown table of the validation scores and the chosen strength of every method."""
    lines = ["| method | strength | task-IL val acc | domain-IL val acc | score (mean) | |",
             "| --- | --- | --- | --- | --- | --- |"]
    chosen = {}
    for method, (key, values) in grid.items():
        scores = {}
        cells = {}
        for value in values:
            per = {inc: [run_one(out, method, key, value, inc, s, validation=True, setup=setup) for s in seeds]
                   for inc in SCENARIOS}
            progress(f"val {method} {key}={fmt(value)}")
            if any(r is None for runs in per.values() for r in runs):
                scores[value] = -math.inf
                cells[value] = {inc: "diverged" if any(r is None for r in runs) else
                                mean_std([r["avg_acc"] for r in runs]) for inc, runs in per.items()}
            else:
                scores[value] = statistics.mean(r["avg_acc"] for runs in per.values() for r in runs)
                cells[value] = {inc: mean_std([r["avg_acc"] for r in runs]) for inc, runs in per.items()}
        best = max(values, key=lambda v: scores[v])
        chosen[method] = (key, best)
        for value in values:
            score = "diverged" if scores[value] == -math.inf else f"{scores[value]:.3f}"
            lines.append(f"| {method} | {key}={fmt(value)} | {cells[value]['task']} | {cells[value]['domain']} "
                         f"| {score} | {'**chosen**' if value == best else ''} |")
    return lines, chosen


def test_table(out: Path, chosen: dict, seeds: tuple[int, ...], progress, setup: list[str] | None = None,
               scenarios: tuple[str, ...] = SCENARIOS) -> list[str]:
    """Naive and every method at its chosen strength on the test split: avg accuracy and forgetting."""
    head = "| method | strength | " + " | ".join(f"{inc}-IL acc | {inc}-IL forgetting" for inc in scenarios) + " |"
    lines = [head, "| --- | --- |" + " --- | --- |" * len(scenarios)]
    for method, (key, value) in {"naive": (None, None), **chosen}.items():
        cells = []
        for inc in scenarios:
            runs = [run_one(out, method, key, value, inc, s, validation=False, setup=setup) for s in seeds]
            if any(r is None for r in runs):
                cells += ["diverged", "diverged"]
            else:
                cells += [mean_std([r["avg_acc"] for r in runs]), mean_std([r["forgetting"] for r in runs])]
        progress(f"test {method}")
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
    val_seeds, test_seeds = ((0,), (0,)) if args.quick else (VAL_SEEDS, TEST_SEEDS)
    t0 = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {message}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        setup = QUICK_SETUP if args.quick else SETUP
        grid_lines, chosen = validation_grid(out, grid, val_seeds, progress, setup)
        print(f"## Validation (20 % of each experience's training images held out; {' '.join(setup)}; "
              f"seeds {', '.join(map(str, val_seeds))})\n")
        print("\n".join(grid_lines))
        print(f"\n## Test ({' '.join(setup)}; seeds {', '.join(map(str, test_seeds))}; mean ± std)\n")
        print("\n".join(test_table(out, chosen, test_seeds, progress, setup)))
        if not args.quick:
            print(f"\n## The chosen strengths on conf/config.yaml's training setup (test; seeds "
                  f"{', '.join(map(str, test_seeds))})\n")
            for epochs in (5, 1):
                print(f"train.epochs={epochs}:\n")
                print("\n".join(test_table(out, chosen, test_seeds, progress, setup=[f"train.epochs={epochs}"],
                                           scenarios=("domain",))))
                print()
    print(f"\n{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
