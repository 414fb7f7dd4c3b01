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
import statistics
from collections import defaultdict
from pathlib import Path

from clexp.config.overrides import override_key
from clexp.review.records import (
    GROUP,
    cell,
    diverged,
    finite,
    job_value,
    load_yaml,
    markdown_table,
    num,
    order,
    text_table,
    varying_keys,
)

# clexp.review.stats (scipy.stats: ~1 s to import) is imported where the report needs it: every training job
# imports this module for its objective

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
COLUMNS = ("method", "scenario", "incremental", "strength_key", "strength", "n_seeds", "val_avg_acc",
           "test_avg_acc_mean", "test_avg_acc_std", "test_avg_acc_ci95_lo", "test_avg_acc_ci95_hi",
           "test_avg_acc_iqm", "interval", "test_forgetting_mean", "test_forgetting_ci95_lo",
           "test_forgetting_ci95_hi", "selected_share", "neighbour_share", "unstable", "selected_on")
# overrides the first-k → whole-stream command replaces (or drops)
REPLACED = ("seed", "method.lam", "method.c", "scenario.use_first")


# ------------------------------------------------------------------------------ the sweepers' objective


def optimising(sweeper_target: str | None) -> bool:
    """Whether a sweeper uses the jobs' return value (Optuna, ...: every sweeper but the basic one)."""
    return bool(sweeper_target) and sweeper_target != BASIC_SWEEPER


def check_objective(cfg, sweeper_target: str | None) -> None:
    """Refuse an optimising sweep on validation accuracy when there is no validation split."""
    from clexp.config.errors import ConfigError

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

UNSTABLE = 1 / 3  # a neighbour of the selected strength wins in more than this share of the resamples: warn


def _mean(values):
    values = [v for v in values if finite(v)]
    return statistics.fmean(values) if values else None


def _std(values):
    values = [v for v in values if finite(v)]
    return statistics.stdev(values) if len(values) > 1 else None


def select(records: list[dict], keys: list[str] | None = None) -> list[dict]:
    """One row per group of jobs differing only in strength and seed: the selected strength (best
    mean validation average accuracy over seeds; without validation, best test average accuracy,
    `selected_on='test'`) and that strength's test mean, std and 95 % interval (clexp.review.stats.interval).
    A strength with a diverged run (failed in training, or non-finite) is never selected.

    Selection stability: the seeds of each candidate strength are resampled (bootstrap, fixed seed) and
    the selection redone: `shares` {strength: how often it would have been selected}, `selected_share`,
    `neighbour_share` (the strengths next to the selected one, in order of strength) and `unstable`
    (neighbour_share > 1/3). Rows also carry `extras` (the other swept keys) and `runs` (the selected
    strength's job records)."""
    from clexp.review.stats import interval, selection_shares

    keys = varying_keys(records) if keys is None else keys
    # diverged runs by what they say of themselves (a failed job may lack a config: None = any)
    bad = [(*(r[k] for k in GROUP), *(job_value(r, k) for k in keys)) for r in diverged(records)]

    def is_diverged(full_key: tuple) -> bool:
        return any(all(b is None or b == v for b, v in zip(d, full_key)) and d[4] == full_key[4] for d in bad)

    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["status"] != "completed":
            continue
        extras = tuple(job_value(r, k) for k in keys)
        head = (r["dataset"], r["scenario"], r["incremental"], r["method"], *extras)
        groups[head][r["strength"]].append(r)
    rows = []
    for head in sorted(groups, key=lambda h: tuple(map(order, h))):
        by_strength = groups[head]
        all_runs = [r for runs in by_strength.values() for r in runs]
        on_val = all(finite(r.get("val_avg_acc")) for r in all_runs)
        score_key = "val_avg_acc" if on_val else "avg_acc"
        candidates = {}
        for strength, runs in by_strength.items():
            full_key = (*head[:4], strength, *head[4:])
            if is_diverged(full_key) or not all(finite(r[score_key]) for r in runs):
                continue
            candidates[strength] = runs
        if not candidates:
            continue
        # best mean score; ties: the smaller strength (the weaker regularizer), deterministic
        scored = sorted(((_mean([r[score_key] for r in runs]), s) for s, runs in candidates.items()),
                        key=lambda c: (c[0], -order(c[1])[1]))
        strength = scored[-1][1]
        runs = candidates[strength]
        shares = (selection_shares({s: [r[score_key] for r in rs] for s, rs in candidates.items()})
                  if len(candidates) > 1 else {strength: 1.0})
        ordered = sorted(candidates, key=order)
        at = ordered.index(strength)
        neighbours = [ordered[i] for i in (at - 1, at + 1) if 0 <= i < len(ordered)]
        neighbour_share = sum(shares.get(s, 0.0) for s in neighbours)
        test = interval([r["avg_acc"] for r in runs])
        forgetting = interval([r["forgetting"] for r in runs])
        rows.append({
            "dataset": head[0], "method": head[3], "scenario": head[1], "incremental": head[2],
            "strength_key": runs[0].get("strength_key", "") if strength is not None else "",
            "strength": strength, "n_seeds": len(runs),
            "val_avg_acc": _mean([r.get("val_avg_acc") for r in runs]),
            "test_avg_acc_mean": test.mean, "test_avg_acc_std": _std([r["avg_acc"] for r in runs]),
            "test_avg_acc_ci95_lo": test.lo, "test_avg_acc_ci95_hi": test.hi, "test_avg_acc_iqm": test.iqm,
            "interval": test.method,
            "test_forgetting_mean": forgetting.mean, "test_forgetting_ci95_lo": forgetting.lo,
            "test_forgetting_ci95_hi": forgetting.hi,
            "selected_share": shares.get(strength, 0.0) if strength is not None else None,
            "neighbour_share": neighbour_share if strength is not None and neighbours else None,
            "unstable": bool(neighbours) and neighbour_share > UNSTABLE,
            "selected_on": "val" if on_val else "test",
            "shares": shares, "extras": dict(zip(keys, head[4:])), "runs": runs, "n_strengths": len(by_strength),
        })
    return rows


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _share(v) -> str:
    return "" if v is None else f"{100 * v:.0f}%"


def selection_table(rows: list[dict], extra_keys: list[str]) -> list[list[str]]:
    """The selection as a header row and body rows of text."""
    from clexp.review.summary import pct

    header = ["method", "scenario", "incremental", *extra_keys, "strength", "n seeds", "val avg acc (%)",
              "test avg acc (%)", "interval", "test forgetting (%)", "selected in resamples",
              "neighbours in resamples", "selected on"]
    body = []
    for r in rows:
        strength = "" if r["strength"] is None else f"{r['strength_key'].split('.')[-1]}={cell(r['strength'])}"
        test = pct(r["test_avg_acc_mean"], r["test_avg_acc_std"], r["test_avg_acc_ci95_lo"], r["test_avg_acc_ci95_hi"])
        forgetting = pct(r["test_forgetting_mean"], None, r["test_forgetting_ci95_lo"], r["test_forgetting_ci95_hi"])
        neighbours = _share(r["neighbour_share"]) + (" UNSTABLE" if r["unstable"] else "")
        body.append([str(r["method"]), str(r["scenario"]), str(r["incremental"]),
                     *(cell(r["extras"][k]) for k in extra_keys), strength, str(r["n_seeds"]),
                     _pct(r["val_avg_acc"]), test, r["interval"], forgetting, _share(r["selected_share"]), neighbours,
                     "val" if r["selected_on"] == "val" else "TEST"])
    return [header, *body]


WARNING = ("WARNING: selected on TEST accuracy (no validation split in these runs: train.val_fraction=0); "
           "the selected rows' test numbers are optimistic")


def unstable_warnings(rows: list[dict]) -> list[str]:
    """One line per group whose selection flips to a neighbouring strength in more than a third of the
    bootstrap resamples of its seeds."""
    out = []
    for r in rows:
        if r["unstable"]:
            extras = "".join(f", {k}={cell(v)}" for k, v in r["extras"].items())
            shares = ", ".join(f"{cell(s)}: {100 * v:.0f}%" for s, v in r["shares"].items() if v)
            out.append(f"WARNING: unstable selection for {r['method']} ({r['scenario']}/{r['incremental']}{extras}): "
                       f"a neighbouring strength wins in {100 * r['neighbour_share']:.0f}% of the seed resamples "
                       f"({shares}); more seeds or a finer grid before trusting "
                       f"{r['strength_key']}={cell(r['strength'])}")
    return out


STABILITY_NOTE = ("selected in / neighbours in resamples: how often this strength, and the strengths next to it, "
                  "have the best mean validation score when each strength's seeds are resampled with replacement "
                  "(1000 resamples, seed 0)")


def selection_text(rows: list[dict]) -> str:
    """The selection as console text (with the warning when a group was selected on test)."""
    keys = list(rows[0]["extras"]) if rows else []
    text = "Selected strengths (best mean validation average accuracy; the test numbers of that strength)\n"
    text += text_table(selection_table(rows, keys)) if rows else "(no completed run)"
    if any(r["selected_on"] == "test" for r in rows):
        text += "\n" + WARNING
    for line in unstable_warnings(rows):
        text += "\n" + line
    return text


def write_selection(records: list[dict], out_dir: Path, keys: list[str] | None = None,
                    rows: list[dict] | None = None) -> dict[str, Path]:
    """`selected.csv` (the columns `COLUMNS`, then the other swept keys) and `selected.md` in `out_dir`.
    `rows`: `select`'s rows, when the caller has them already."""
    from clexp.review.summary import INTERVAL_NOTE

    keys = varying_keys(records) if keys is None else keys
    rows = select(records, keys) if rows is None else rows
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
          "validation average accuracy over seeds, and its test numbers (" + INTERVAL_NOTE + ").", "",
          STABILITY_NOTE + ".", ""]
    if any(r["selected_on"] == "test" for r in rows):
        md += [f"**{WARNING}**", ""]
    md += [f"**{line}**" for line in unstable_warnings(rows)]
    md += [markdown_table(selection_table(rows, keys)) if rows else "(no completed run)"]
    written["selected_md"].write_text("\n".join(md) + "\n")
    return written


# ------------------------------------------------------------------------------ first k → whole stream


def _job_overrides(record: dict) -> list[str]:
    """The job's command-line overrides as written (`.hydra/overrides.yaml`)."""
    if "override_list" in record:
        return list(record["override_list"])
    raw = load_yaml(Path(record["folder"]) / ".hydra" / "overrides.yaml")
    return [str(o) for o in raw] if isinstance(raw, list) else []


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

    commands = []
    for r in rows:
        kept = [o for o in _job_overrides(r["runs"][0]) if not _dropped(o)]
        if r["strength"] is not None:
            kept.append(f"{r['strength_key']}={num(float(r['strength']))}")
        kept.append(f"seed={seeds}")
        commands.append("clexp -m " + " ".join(shlex.quote(o) for o in kept))
    return commands
