"""Paired comparisons of the selected configurations: does a method beat naive (and the best method), seed
by seed, and how many seeds would the claim need?

For every selected row (`clexp.review.selection.select`: a method at its strength selected on validation) against
naive, and against the best method of its scenario (best mean validation average accuracy among the
selected rows; test where the runs have no validation split), in the same scenario and the same values of
the other swept keys, on the seeds both ran: the mean paired difference (method − reference) with its 95 %
interval (clexp.review.stats.interval on the differences), the sign count (k of n seeds better), rliable's
probability of improvement, and the verdict — "not distinguishable" when the interval covers 0. Both for
the final average accuracy (higher is better) and forgetting (lower is better). From the differences'
standard deviation: the seeds a paired t test needs (80 % power, α = 0.05) for a difference of the
observed size and of 1 point.

Written by `clexp-report` as `paired.csv` and `paired.md` (and the table in report.html / the wandb run).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from clexp.review.records import cell, markdown_table, order

METRICS = (("avg_acc", True), ("forgetting", False))  # (metric, higher is better)
COLUMNS = ("dataset", "scenario", "incremental", "method", "strength", "against", "against_strength", "metric",
           "n", "diff_mean", "diff_ci95_lo", "diff_ci95_hi", "interval", "better", "prob_improvement",
           "verdict", "seeds_for_observed", "seeds_for_1pt")
NOTE = ("Paired on the seeds both ran: Δ = method − reference (mean [95 % interval over the paired differences: t "
        "for n < 5, percentile bootstrap for n ≥ 5], points); better: seeds where the method is better (higher "
        "accuracy, lower forgetting); P(impr.): probability of improvement (Agarwal et al. 2021: the share of "
        "all pairs of runs where the method is better, ties ½); seeds needed: for a paired t test to detect "
        "a difference of the observed size, and of 1 point, with 80 % power at α = 0.05")


def by_seed(runs: list[dict], metric: str) -> dict:
    """{seed: value} (the mean where a seed ran more than once)."""
    values = defaultdict(list)
    for r in runs:
        values[r.get("seed")].append(r[metric])
    return {s: sum(v) / len(v) for s, v in values.items() if all(isinstance(x, (int, float)) for x in v)}


def _score(row: dict) -> float:
    v = row["val_avg_acc"] if row["selected_on"] == "val" else row["test_avg_acc_mean"]
    return float("-inf") if v is None else v


def compare(selected: list[dict]) -> list[dict]:
    """The paired rows (columns `COLUMNS`) of `select`'s rows."""
    from clexp.review.stats import paired

    groups = defaultdict(list)
    for r in selected:
        groups[(r["dataset"], r["scenario"], r["incremental"], tuple(r["extras"].items()))].append(r)
    out = []
    for head in sorted(groups, key=lambda h: tuple(map(order, h[:3])) + (str(h[3]),)):
        rows = groups[head]
        naive = next((r for r in rows if r["method"] == "naive"), None)
        best = max(rows, key=_score)
        for r in rows:
            for ref, label in ((naive, "naive"), (best, "best")):
                # naive against the best is the best against naive, mirrored: shown once
                if ref is None or ref is r or (label == "best" and naive in (ref, r)):
                    continue
                for metric, higher in METRICS:
                    p = paired(by_seed(r["runs"], metric), by_seed(ref["runs"], metric), higher)
                    if p is None:
                        continue
                    verdict = ("not distinguishable" if not p.distinguishable else
                               "better" if (p.diff.mean > 0) == higher else "worse")
                    out.append({
                        "dataset": head[0], "scenario": head[1], "incremental": head[2], "method": r["method"],
                        "strength": r["strength"], "extras": dict(head[3]),
                        "against": ref["method"] if label == "naive" else f"best: {ref['method']}",
                        "against_strength": ref["strength"], "metric": metric, "n": p.n,
                        "diff_mean": p.diff.mean, "diff_ci95_lo": p.diff.lo, "diff_ci95_hi": p.diff.hi,
                        "interval": p.diff.method, "better": p.better, "prob_improvement": p.prob_improvement,
                        "verdict": verdict, "seeds_for_observed": p.seeds_observed, "seeds_for_1pt": p.seeds_unit,
                    })
    return out


def _pts(v) -> str:
    return "" if v is None else f"{100 * v:+.1f}"


def _strength(method, strength) -> str:
    return str(method) + ("" if strength is None else f" {cell(strength)}")


def table(rows: list[dict]) -> list[list[str]]:
    header = ["scenario", "method", "against", "metric", "n", "Δ (points) [95 % interval]", "better", "P(impr.)",
              "verdict", "seeds needed (observed Δ / 1 pt)"]
    body = []
    for r in rows:
        diff = _pts(r["diff_mean"]) + ("" if r["diff_ci95_lo"] is None
                                      else f" [{_pts(r['diff_ci95_lo'])}, {_pts(r['diff_ci95_hi'])}]")
        seeds = " / ".join("—" if s is None else str(s) for s in (r["seeds_for_observed"], r["seeds_for_1pt"]))
        extras = "".join(f" {k}={cell(v)}" for k, v in r["extras"].items())
        p = "" if r["prob_improvement"] is None else f"{r['prob_improvement']:.2f}"
        body.append([f"{r['dataset']}/{r['scenario']}/{r['incremental']}{extras}",
                     _strength(r["method"], r["strength"]), _strength(r["against"], r["against_strength"]),
                     r["metric"], str(r["n"]), diff, f"{r['better']} of {r['n']}", p, r["verdict"], seeds])
    return [header, *body]


def seeds_notes(rows: list[dict]) -> list[str]:
    """One line per comparison of average accuracy whose n is below the seeds its observed difference needs."""
    out = []
    for r in rows:
        need = r["seeds_for_observed"]
        if r["metric"] == "avg_acc" and need is not None and r["n"] < need:
            out.append(f"{_strength(r['method'], r['strength'])} vs {_strength(r['against'], r['against_strength'])} "
                       f"({r['scenario']}/{r['incremental']}): {r['n']} seeds; a difference of "
                       f"{abs(100 * r['diff_mean']):.1f} points needs {need} for 80% power"
                       + ("" if r["seeds_for_1pt"] is None else f" (1 point: {r['seeds_for_1pt']})"))
    return out


def comparison_text(rows: list[dict]) -> str:
    if not rows:
        return "Paired comparisons: none (no method with a reference on common seeds)"
    from clexp.review.records import text_table

    text = "Paired comparisons (method − reference on common seeds; points)\n" + text_table(table(rows))
    notes = seeds_notes(rows)
    if notes:
        text += "\nSeeds needed:\n" + "\n".join("  " + n for n in notes)
    return text


def write_comparisons(rows: list[dict], out_dir: Path) -> dict[str, Path]:
    """`paired.csv` (`COLUMNS`, then the other swept keys) and `paired.md`."""
    out_dir = Path(out_dir)
    written = {"paired_csv": out_dir / "paired.csv", "paired_md": out_dir / "paired.md"}
    extra = list(rows[0]["extras"]) if rows else []
    with open(written["paired_csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, *extra])
        for r in rows:
            writer.writerow([("" if r[c] is None else r[c]) for c in COLUMNS] + [cell(r["extras"][k]) for k in extra])
    md = ["# Paired comparisons", "", NOTE + ".", ""]
    md += [markdown_table(table(rows)) if rows else "(no method with a reference on common seeds)"]
    notes = seeds_notes(rows)
    if notes:
        md += ["", "## Seeds needed", ""] + [f"- {n}" for n in notes]
    written["paired_md"].write_text("\n".join(md) + "\n")
    return written


# ------------------------------------------------------------------------------------------ across scenarios


def aggregate_rows(selected: list[dict]) -> list[dict]:
    """A sweep over several scenarios (dataset × scenario × incremental): per method (and values of the
    other swept keys), the IQM of its selected configurations' final average accuracy over the runs of
    every scenario, with a stratified bootstrap interval (clexp.review.stats.aggregate), and the scores per
    scenario for the performance profile. Empty for a sweep of one scenario."""
    from clexp.review.stats import aggregate

    scenarios = {(r["dataset"], r["scenario"], r["incremental"]) for r in selected}
    if len(scenarios) < 2:
        return []
    per_method = defaultdict(list)
    for r in selected:
        per_method[(r["method"], tuple(r["extras"].items()))].append([x["avg_acc"] for x in r["runs"]])
    out = []
    for (method, extras), scores in sorted(per_method.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        agg = aggregate(scores)
        if agg is None:
            continue
        out.append({"method": method, "extras": dict(extras), "scenarios": len(scores), "of": len(scenarios),
                    "runs": agg.n, "iqm": agg.iqm, "iqm_ci95_lo": agg.lo, "iqm_ci95_hi": agg.hi, "mean": agg.mean,
                    "scores": scores})
    return out


def aggregate_table(rows: list[dict]) -> list[list[str]]:
    header = ["method", "scenarios", "runs", "IQM avg acc (%) [95 % stratified bootstrap]", "mean (%)"]
    body = [[str(r["method"]) + "".join(f" {k}={cell(v)}" for k, v in r["extras"].items()),
             f"{r['scenarios']} of {r['of']}",
             str(r["runs"]), f"{100 * r['iqm']:.1f} [{100 * r['iqm_ci95_lo']:.1f}, {100 * r['iqm_ci95_hi']:.1f}]",
             f"{100 * r['mean']:.1f}"] for r in rows]
    return [header, *body]


def write_aggregates(rows: list[dict], out_dir: Path) -> dict[str, Path]:
    """`aggregate.md`: the IQM over scenarios per method (nothing for a sweep of one scenario)."""
    if not rows:
        return {}
    path = Path(out_dir) / "aggregate.md"
    md = ["# Across scenarios", "", "Per method, its selected configuration in every scenario: the interquartile "
          "mean of the final average accuracy over all runs of all scenarios, with a 95 % stratified bootstrap "
          "interval (runs resampled within each scenario, 2000 resamples, seed 0; Agarwal et al. 2021).", "",
          markdown_table(aggregate_table(rows))]
    path.write_text("\n".join(md) + "\n")
    return {"aggregate_md": path}
