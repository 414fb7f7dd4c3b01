"""`python -m bench.select_defaults [--quick] [--workers N]`: each method's default strength, chosen on validation data.

The stream is the default one (Split Digits, 5 experiences, the MLP of conf/model/mlp.yaml, batch 32),
in task-IL and domain-IL, under the two training setups of SETUPS:

- `default`: conf/config.yaml's own (Adam lr 0.001, 5 epochs per experience), a setup in which
  fine-tuning forgets in domain-IL (about 0.2 of an experience's accuracy) and a little in task-IL;
- `1 epoch`: the same with `train.epochs=1` (a short run, where the first model is still uncertain and
  its Fisher large).

A default must help where there is forgetting and harm nowhere: one strength per method for both.
(Under SGD the stiff penalties these methods need go beyond SGD's stability limit, lr·λ·max F < 2, in
the short run — clexp/optim/stability.py warns — which is why the default optimizer is Adam.)

1. Validation: clexp's own validation split, `train.val_fraction=0.2` (a seeded, class-stratified 20 %
   of each experience's training images, never trained on); the score reads `val_metrics` only. Every
   method and strength of GRID, and naive, run over VAL_SEEDS in task- and domain-IL under every setup;
   a cell is the mean final validation average accuracy over the seeds. A strength is admissible when
   no run diverges (NaN / inf) and no cell falls more than HARM below naive's. The default is the
   admissible strength with the best score, the mean of all its cells.
2. Test: naive and every method at its chosen strength as a user runs it (conf/config.yaml's
   `train.val_fraction`, the test split's `metrics`), mean (± std) over TEST_SEEDS of the average
   accuracy and the forgetting, per setup; beside each forgetting, on how many seeds it is below naive's
   on the same seed (same initial weights and batches: a paired comparison, "3/3"), and on how many it
   equals naive's (", =1": typically both 0 — in task-IL fine-tuning often forgets nothing on a seed).

Runs go to `--workers` processes (default: one per core). Prints the validation grid and the test
tables in markdown. `--quick` (one seed, two strengths per method, the `1 epoch` setup only) is the
smoke mode of tests/test_select_defaults.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

# name: overrides (the model, the batch and the optimizer are the defaults)
SETUPS = {
    "default": [],
    "1 epoch": ["train.epochs=1"],
}
QUICK_SETUPS = {"1 epoch": ["train.epochs=1"]}  # --quick: a smoke run of the procedure, not a selection
TIE = 1e-9  # forgettings this close are equal (both 0: neither run lost anything)
HARM = 0.01  # the most a default may lose to naive (validation average accuracy) in any cell
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "plots=false", "trainer.accelerator=cpu"]
SCENARIOS = ("task", "domain")
VAL_FRACTION = 0.2
VAL_SEEDS = (0, 1)
TEST_SEEDS = (0, 1, 2)

# method: (strength key, grid of its values — a value may be (strength, ((other key, value), ...)) —
# log-spaced around its plausible scale under Adam; a probe of one seed in
# domain-IL put each method's effect between the grid's ends: no change at the bottom, lost plasticity at the top)
GRID = {
    "ewc": ("lam", [1e3, 3e3, 1e4, 3e4, 1e5, 3e5]),
    "online_ewc": ("lam", [1e3, 3e3, 1e4, 3e4, 1e5, 3e5]),
    "si": ("c", [10, 30, 100, 300, 1000, 3000]),
    "mas": ("lam", [0.1, 0.3, 1, 3, 10]),
    "l2": ("lam", [0.1, 0.3, 1, 3]),
    "lwf": ("lam", [0.3, 0.5, 1, 2]),
    "kfac_ewc": ("lam", [3, 10, 30, 100, 300]),
    # EWC++'s α (the newest batch Fisher's weight) with it: at 0.9 F* is about the last batch's Fisher,
    # small once that batch is learnt; at 0.1 it averages the last ~10 estimates
    "ewcpp": ("lam", [(v, (("alpha", a),)) for a in (0.9, 0.1) for v in (1e4, 3e4, 1e5, 3e5)]),
    # the paper form's scores are loss changes per unit of KL summed over the intervals (unnormalised)
    "rwalk": ("lam", [1e-4, 3e-4, 1e-3, 3e-3]),
    # the other families' main knob (README, "Beyond the quadratic penalty"), around the paper's value: GPM's
    # energy threshold; the memories of OGD (directions), A-GEM and ER (samples); PackNet's pruned share
    "gpm": ("threshold", [0.5, 0.7, 0.9, 0.97]),
    "ogd": ("memory_per_experience", [20, 50, 100]),
    "agem": ("memory_per_experience", [25, 50, 100, 200]),
    "er": ("buffer_size", [50, 100, 200, 500]),
    "packnet": ("prune_fraction", [0.5, 0.75, 0.9]),
}
QUICK_GRID = {method: (key, [values[0], values[-1]]) for method, (key, values) in GRID.items()}


class Run(NamedTuple):
    """One run of the procedure: a method at a strength, in a scenario, seed and setup, on validation or test."""
    method: str
    key: str | None
    value: float | None
    incremental: str
    seed: int
    validation: bool
    setup: str


def run_one(out: Path, setups: dict, run: Run) -> dict | None:
    """(avg_acc, forgetting) of one run under its setup's overrides, or None when it went NaN / inf."""
    import clexp
    from clexp.core.callbacks.finite_guard import NonFiniteError

    overrides = [*QUIET, *setups[run.setup], f"method={run.method}", f"scenario.incremental={run.incremental}",
                 f"seed={run.seed}", f"name=select-{run.method}-{run.incremental}-s{run.seed}"]
    strength = ""
    if run.key is not None:
        overrides += method_overrides(run.key, run.value)
        strength = f"-{run.key}{fmt(run.value)}".replace(" ", "-").replace("=", "")
    if run.validation:
        overrides.append(f"train.val_fraction={VAL_FRACTION}")
    folder = (f"{'val' if run.validation else 'test'}-{run.setup.replace(' ', '')}-{run.method}{strength}"
              f"-{run.incremental}-s{run.seed}")
    overrides.append(f"hydra.run.dir={out / folder}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the runs' own lines (model summary)
            results = clexp.run(overrides=overrides)
    except NonFiniteError:
        return None
    metrics = results["val_metrics"] if run.validation else results["metrics"]  # validation never reads test
    return {"avg_acc": metrics["avg_acc"], "forgetting": metrics["forgetting"]}


def _quiet_worker() -> None:
    """One thread and quiet logs, in this process and in every worker (the pool's initializer)."""
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_MODE", "offline")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # LwF's frozen teacher


def _call(args):
    out, setups, run = args
    return run, run_one(out, setups, run)


def run_all(out: Path, setups: dict, runs: list[Run], workers: int, progress) -> dict:
    """{run: result} of every run, in `workers` processes (1: in this one)."""
    results = {}
    jobs = [(out, setups, r) for r in runs]
    with contextlib.ExitStack() as stack:
        done = map(_call, jobs)
        if workers > 1:  # spawn: a fresh interpreter per worker, nothing of this process's state inherited
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers, initializer=_quiet_worker))
            done = pool.imap_unordered(_call, jobs)
        for k, (run, result) in enumerate(done, 1):
            results[run] = result
            if k % 10 == 0 or k == len(jobs):
                progress(f"{k}/{len(jobs)} runs")
    return results


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def fmt(value) -> str:
    """A grid value as the tables show it: `10000`, or `10000 alpha=0.1` for a strength with other keys."""
    if isinstance(value, tuple):
        strength, extra = value
        return f"{strength:g}" + "".join(f" {k}={v:g}" for k, v in extra)
    return f"{value:g}"


def method_overrides(key: str, value) -> list[str]:
    """The overrides of a grid value: the strength, and the other keys of a (strength, ((key, value), ...))."""
    if isinstance(value, tuple):
        strength, extra = value
        return [f"method.{key}={strength}", *(f"method.{k}={v}" for k, v in extra)]
    return [f"method.{key}={value}"]


def validation_grid(out: Path, grid: dict, seeds: tuple[int, ...], setups: dict, workers: int, progress
                    ) -> tuple[list[str], dict]:
    """The markdown table of the validation accuracies (one column per setup and scenario, mean over
    seeds; naive first), each strength's score, and the chosen strength of every method (module docstring)."""
    columns = [(name, inc) for name in setups for inc in SCENARIOS]
    candidates = [("naive", None, None)] + [(m, key, v) for m, (key, values) in grid.items() for v in values]
    runs = {c: [[Run(*c, inc, s, True, name) for s in seeds] for name, inc in columns] for c in candidates}
    results = run_all(out, setups, [r for cells in runs.values() for rs in cells for r in rs], workers, progress)

    def cells_of(candidate) -> list[float | None]:
        return [None if any(results[r] is None for r in rs) else statistics.mean(results[r]["avg_acc"] for r in rs)
                for rs in runs[candidate]]

    def show(cells):
        return " | ".join("diverged" if c is None else f"{c:.3f}" for c in cells)

    lines = ["| method | strength | " + " | ".join(f"{name}, {inc}-IL" for name, inc in columns) + " | score | |",
             "| --- | --- |" + " --- |" * len(columns) + " --- | --- |"]
    naive = cells_of(("naive", None, None))
    lines.append(f"| naive | — | {show(naive)} | | reference |")
    chosen = {}
    for method, (key, values) in grid.items():
        rows = {value: cells_of((method, key, value)) for value in values}
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
        chosen[method] = (key, best if best is not None else values[0])
        for value, cells in rows.items():
            mark = "**chosen**" if value == best else note.get(value, "")
            shown = f"{score[value]:.3f}" if value in score else "—"
            lines.append(f"| {method} | {key}={fmt(value)} | {show(cells)} | {shown} | {mark} |")
        if best is None:
            lines.append(f"| {method} | no admissible strength: the smallest, {key}={fmt(values[0])}, is kept | "
                         + " | " * len(columns) + " | |")
    return lines, chosen


def test_tables(out: Path, chosen: dict, seeds: tuple[int, ...], setups: dict, workers: int, progress
                ) -> dict[str, list[str]]:
    """Per setup: naive and every method at its chosen strength on the test split, avg accuracy and
    forgetting, with the number of seeds on which the forgetting is below naive's (k/n)."""
    methods = {"naive": (None, None), **chosen}
    runs = {(name, m, inc): [Run(m, key, value, inc, s, False, name) for s in seeds]
            for name in setups for m, (key, value) in methods.items() for inc in SCENARIOS}
    results = run_all(out, setups, [r for rs in runs.values() for r in rs], workers, progress)
    head = "| method | strength | " + " | ".join(f"{inc}-IL acc | {inc}-IL forgetting" for inc in SCENARIOS) + " |"
    tables = {}
    for name in setups:
        lines = [head, "| --- | --- |" + " --- | --- |" * len(SCENARIOS)]
        for method, (key, value) in methods.items():
            cells = []
            for inc in SCENARIOS:
                mine = [results[r] for r in runs[(name, method, inc)]]
                naive = [results[r] for r in runs[(name, "naive", inc)]]
                if any(r is None for r in mine):
                    cells += ["diverged", "diverged"]
                    continue
                forgetting = mean_std([r["forgetting"] for r in mine])
                if method != "naive" and all(r is not None for r in naive):  # paired: the same seed's naive run
                    below = sum(r["forgetting"] < ref["forgetting"] - TIE for r, ref in zip(mine, naive))
                    tied = sum(abs(r["forgetting"] - ref["forgetting"]) <= TIE for r, ref in zip(mine, naive))
                    forgetting += f" ({below}/{len(mine)}" + (f", ={tied}" if tied else "") + ")"
                cells += [mean_std([r["avg_acc"] for r in mine]), forgetting]
            strength = "—" if key is None else f"{key}={fmt(value)}"
            lines.append(f"| {method} | {strength} | " + " | ".join(cells) + " |")
        tables[name] = lines
    return tables


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, two strengths per method (a smoke run)")
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(GRID), metavar="METHOD",
                        help="methods to sweep (default: all of GRID)")
    parser.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes running the runs (default: one per core; 1: in this process)")
    parser.add_argument("--test-value", nargs="*", default=None, metavar="METHOD=VALUE",
                        help="no validation grid: the test tables of these methods at these values of their GRID "
                             "key (a default kept where no value is admissible)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    fixed = {}
    for item in args.test_value or []:
        method, _, value = item.partition("=")
        if method not in GRID or not value:
            parser.error(f"--test-value {item}: METHOD=VALUE with METHOD one of {', '.join(sorted(GRID))}")
        fixed[method] = (GRID[method][0], float(value))
    _quiet_worker()
    grid = QUICK_GRID if args.quick else GRID
    grid = {m: grid[m] for m in (args.only or grid)}
    setups = QUICK_SETUPS if args.quick else SETUPS
    val_seeds, test_seeds = ((0,), (0,)) if args.quick else (VAL_SEEDS, TEST_SEEDS)
    t0 = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {message}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if fixed:
            return test_only(out, fixed, test_seeds, setups, args.workers, progress)
        progress("validation grid")
        grid_lines, chosen = validation_grid(out, grid, val_seeds, setups, args.workers, progress)
        described = "; ".join(f"{name}: {' '.join(o) or 'conf/config.yaml'}" for name, o in setups.items())
        print(f"## Validation (train.val_fraction={VAL_FRACTION}, val_metrics; seeds "
              f"{', '.join(map(str, val_seeds))}; {described})\n")
        print("\n".join(grid_lines), flush=True)
        progress("test tables")
        print_tests(test_tables(out, chosen, test_seeds, setups, args.workers, progress), test_seeds, setups)
    print(f"\n{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


def print_tests(tables: dict, seeds: tuple[int, ...], setups: dict) -> None:
    for name, setup in setups.items():
        print(f"\n## Test, {name} ({' '.join(setup) or 'conf/config.yaml'}; seeds "
              f"{', '.join(map(str, seeds))}; mean ± std)\n")
        print("\n".join(tables[name]))


def test_only(out: Path, fixed: dict, seeds: tuple[int, ...], setups: dict, workers: int, progress) -> int:
    """`--test-value`: the test tables of the given values, no validation grid."""
    progress("test tables")
    print_tests(test_tables(out, fixed, seeds, setups, workers, progress), seeds, setups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
