"""Honest selection: what a sweeper optimises (`objective`), and the strength a report selects.

- `objective: val` (the default, `conf/config.yaml`): a job returns its final average accuracy on
  the validation splits (`train.val_fraction`), which is what Optuna (any sweeper but the basic one)
  maximises. Without a validation split such a sweep is refused unless `objective=test` is given:
  selecting on the test sets makes the winner's numbers optimistic.
- `clexp-report SWEEP [MORE]` (`write_selection`): for every group of jobs that differ only in
  strength and seed (method × scenario × every other swept key), the strength with the best mean
  validation average accuracy over seeds is selected and its TEST mean ± std reported:
  `selected.csv`, `selected.md`. A group whose runs have no validation split is selected on test,
  and says so in capitals.
- The first-k protocol (Chaudhry et al. 2019): tune on `scenario.use_first=k`, then
  `clexp-report SWEEP --emit-overrides` prints the `clexp -m ...` command(s) that run the selected
  strengths on the whole stream over several seeds.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from clexp.overrides import override_key

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
COLUMNS = ("method", "scenario", "incremental", "strength_key", "strength", "n_seeds", "val_avg_acc",
           "test_avg_acc_mean", "test_avg_acc_std", "test_forgetting_mean", "selected_on")
# overrides the first-k → whole-stream command replaces (or drops)
REPLACED = ("seed", "method.lam", "method.c", "scenario.use_first")


# ------------------------------------------------------------------------------ the sweepers' objective


def optimising(sweeper_target: str | None) -> bool:
    """Whether a sweeper uses the jobs' return value (Optuna, ...: every sweeper but the basic one)."""
    return bool(sweeper_target) and sweeper_target != BASIC_SWEEPER


def check_objective(cfg, sweeper_target: str | None) -> None:
    """Refuse an optimising sweep on validation accuracy when there is no validation split."""
    from clexp.errors import ConfigError

    if not optimising(sweeper_target):
        return
    objective = cfg.get("objective", "val")
    fraction = (cfg.get("train") or {}).get("val_fraction") or 0
    if objective == "val" and not fraction:
        raise ConfigError("objective", "val", "train.val_fraction > 0 (the sweeper maximises the validation "
                          "average accuracy), or objective=test to select on the test sets knowingly")


def objective_value(cfg, results: dict) -> float | None:
    """What a job returns to the sweeper: the final average accuracy on validation (`objective: val`,
    when the run has a validation split) or on test (`objective: test`, or no split at all — a
    sweeper that optimises was refused that case before training)."""
    val = results.get("val_metrics")
    if cfg.get("objective", "val") == "val" and val:
        return val["avg_acc"]
    return results["metrics"]["avg_acc"]


# ------------------------------------------------------------------------------ the report's selection


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mean(values):
    values = [v for v in values if _finite(v)]
    return statistics.fmean(values) if values else None


def _std(values):
    values = [v for v in values if _finite(v)]
    return statistics.stdev(values) if len(values) > 1 else None


def _strength_key(runs: list[dict]) -> str:
    method = (runs[0].get("config") or {}).get("method") or {}
    if method.get("lam") is not None:
        return "method.lam"
    if method.get("c") is not None:
        return "method.c"
    return ""


def select(records: list[dict], keys: list[str] | None = None) -> list[dict]:
    """One row per group of jobs differing only in strength and seed: the selected strength (best
    mean validation average accuracy over seeds; without validation, best test average accuracy,
    `selected_on='test'`) and that strength's test mean ± std. A strength with a diverged run (failed
    in training, or non-finite) is never selected. Rows also carry `extras` (the other swept keys)
    and `runs` (the selected strength's job records)."""
    from clexp.report import GROUP, _diverged, _order, job_value, varying_keys

    keys = varying_keys(records) if keys is None else keys
    # diverged runs by what they say of themselves (a failed job may lack a config: None = any)
    bad = [(*(r[k] for k in GROUP), *(job_value(r, k) for k in keys)) for r in _diverged(records)]

    def diverged(full_key: tuple) -> bool:
        return any(all(b is None or b == v for b, v in zip(d, full_key)) and d[4] == full_key[4] for d in bad)

    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["status"] != "completed":
            continue
        extras = tuple(job_value(r, k) for k in keys)
        head = (r["dataset"], r["scenario"], r["incremental"], r["method"], *extras)
        groups[head][r["strength"]].append(r)
    rows = []
    for head in sorted(groups, key=lambda h: tuple(map(_order, h))):
        by_strength = groups[head]
        all_runs = [r for runs in by_strength.values() for r in runs]
        on_val = all(_finite(r.get("val_avg_acc")) for r in all_runs)
        score_key = "val_avg_acc" if on_val else "avg_acc"
        candidates = []
        for strength, runs in by_strength.items():
            full_key = (*head[:4], strength, *head[4:])
            if diverged(full_key) or not all(_finite(r[score_key]) for r in runs):
                continue
            candidates.append((_mean([r[score_key] for r in runs]), strength, runs))
        if not candidates:
            continue
        # best mean score; ties: the smaller strength (the weaker regularizer), deterministic
        score, strength, runs = max(candidates, key=lambda c: (c[0], -_order(c[1])[1]))
        tests = [r["avg_acc"] for r in runs]
        rows.append({
            "dataset": head[0], "method": head[3], "scenario": head[1], "incremental": head[2],
            "strength_key": _strength_key(runs) if strength is not None else "",
            "strength": strength, "n_seeds": len(runs),
            "val_avg_acc": _mean([r.get("val_avg_acc") for r in runs]),
            "test_avg_acc_mean": _mean(tests), "test_avg_acc_std": _std(tests),
            "test_forgetting_mean": _mean([r["forgetting"] for r in runs]),
            "selected_on": "val" if on_val else "test",
            "extras": dict(zip(keys, head[4:])), "runs": runs, "n_strengths": len(by_strength),
        })
    return rows


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _table(rows: list[dict], extra_keys: list[str]) -> list[list[str]]:
    from clexp.report import _cell

    header = ["method", "scenario", "incremental", *extra_keys, "strength", "n seeds", "val avg acc (%)",
              "test avg acc (%)", "test forgetting (%)", "selected on"]
    body = []
    for r in rows:
        strength = "" if r["strength"] is None else f"{r['strength_key'].split('.')[-1]}={_cell(r['strength'])}"
        test = _pct(r["test_avg_acc_mean"]) + ("" if r["test_avg_acc_std"] is None
                                                else f" ± {100 * r['test_avg_acc_std']:.1f}")
        body.append([str(r["method"]), str(r["scenario"]), str(r["incremental"]),
                     *(_cell(r["extras"][k]) for k in extra_keys), strength, str(r["n_seeds"]),
                     _pct(r["val_avg_acc"]), test, _pct(r["test_forgetting_mean"]),
                     "val" if r["selected_on"] == "val" else "TEST"])
    return [header, *body]


WARNING = ("WARNING: selected on TEST accuracy (no validation split in these runs: train.val_fraction=0); "
           "the selected rows' test numbers are optimistic")


def selection_text(rows: list[dict]) -> str:
    """The selection as console text (with the warning when a group was selected on test)."""
    from clexp.report import text_table

    keys = list(rows[0]["extras"]) if rows else []
    text = "Selected strengths (best mean validation average accuracy; the test numbers of that strength)\n"
    text += text_table(_table(rows, keys)) if rows else "(no completed run)"
    if any(r["selected_on"] == "test" for r in rows):
        text += "\n" + WARNING
    return text


def write_selection(records: list[dict], out_dir: Path, keys: list[str] | None = None) -> dict[str, Path]:
    """`selected.csv` (the columns `COLUMNS`, then the other swept keys) and `selected.md` in `out_dir`."""
    from clexp.report import markdown_table, varying_keys

    keys = varying_keys(records) if keys is None else keys
    rows = select(records, keys)
    out_dir = Path(out_dir)
    written = {"selected_csv": out_dir / "selected.csv", "selected_md": out_dir / "selected.md"}
    with open(written["selected_csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, *keys])
        for r in rows:
            writer.writerow([("" if r[c] is None else r[c]) for c in COLUMNS] +
                            [("" if r["extras"][k] is None else r["extras"][k]) for k in keys])
    md = ["# Selected strengths", "",
          "For every group of jobs that differ only in strength and seed, the strength with the best mean "
          "validation average accuracy over seeds, and its test numbers (mean ± std over seeds, in percent).", ""]
    if any(r["selected_on"] == "test" for r in rows):
        md += [f"**{WARNING}**", ""]
    md += [markdown_table(_table(rows, keys)) if rows else "(no completed run)"]
    written["selected_md"].write_text("\n".join(md) + "\n")
    return written


# ------------------------------------------------------------------------------ first k → whole stream


def _job_overrides(record: dict) -> list[str]:
    """The job's command-line overrides as written (`.hydra/overrides.yaml`)."""
    from clexp.report import _load_yaml

    raw = _load_yaml(Path(record["folder"]) / ".hydra" / "overrides.yaml")
    return [str(o) for o in raw] if raw is not None else []


def _dropped(override: str) -> bool:
    """Overrides the whole-stream command leaves out: the seed and strength (set anew), the first-k cut,
    Hydra's own run keys, and the search (an Optuna preset or sweeper: the strength is chosen now)."""
    key = override_key(override)
    value = override.split("=", 1)[1] if "=" in override else ""
    return (key in REPLACED or key.startswith(("hydra.", "hydra/sweeper"))
            or (key == "experiment" and value.startswith("optuna")))


def emit_overrides(rows: list[dict], seeds: str = "0,1,2,3,4") -> list[str]:
    """One `clexp -m ...` command per selected group: the overrides of a selected job as it was run,
    with the selected strength, without `scenario.use_first` (so: the whole stream), over `seeds`."""
    import shlex

    from clexp.report import _num

    commands = []
    for r in rows:
        kept = [o for o in _job_overrides(r["runs"][0]) if not _dropped(o)]
        if r["strength"] is not None:
            kept.append(f"{r['strength_key']}={_num(float(r['strength']))}")
        kept.append(f"seed={seeds}")
        commands.append("clexp -m " + " ".join(shlex.quote(o) for o in kept))
    return commands
