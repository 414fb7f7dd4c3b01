"""The summary table of `clexp-report`: one row per configuration, its seeds' statistics with intervals.

Rows: jobs grouped by dataset × scenario × incremental × method × strength (λ, or c for SI) and by every
other override that differs between the jobs (`clexp.review.records.varying_keys`) — except `seed`: the jobs left
in a row are its seeds. A row gives n, and for the final average accuracy, forgetting and BWT the mean,
the sample std, a 95 % interval over seeds (Student's t for n < 5, a percentile bootstrap with a fixed
seed for n ≥ 5: `clexp.review.stats.interval`; which one in the row's `interval` column) and the IQM for n ≥ 5;
and the mean validation average accuracy (what the selection reads). Non-finite values are left out of the
statistics.
"""

from __future__ import annotations

from collections import defaultdict

from clexp.review.records import GROUP, STATS, cell, finite, job_value, order, varying_keys
from clexp.review.stats import interval


def group_key(r: dict, keys: list[str]) -> tuple:
    return tuple(r[k] for k in GROUP) + tuple(job_value(r, k) for k in keys)


def grouped(records: list[dict], keys: list[str]) -> dict[tuple, list[dict]]:
    """The completed runs by configuration (GROUP columns + `keys`), in a stable order."""
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "completed":
            groups[group_key(r, keys)].append(r)
    return {k: groups[k] for k in sorted(groups, key=lambda k: tuple(map(order, k)))}


def summarize(records: list[dict], keys: list[str] | None = None) -> list[dict]:
    """One row per configuration: n; per STATS `_mean`, `_std`, `_ci95_lo`, `_ci95_hi`, `_iqm` (n ≥ 5);
    `interval` (how the intervals were computed: 't', 'bootstrap' or '' for n = 1); `val_avg_acc_mean`
    (None unless every run has a validation split). The configuration: the GROUP columns and `keys`
    (default: `varying_keys(records)`), each a column of the row."""
    keys = varying_keys(records) if keys is None else keys
    rows = []
    for key, runs in grouped(records, keys).items():
        row = dict(zip((*GROUP, *keys), key))
        row["n"] = len(runs)
        method = ""
        for stat in STATS:
            values = [r[stat] for r in runs if finite(r[stat])]
            iv = interval(values)
            row[f"{stat}_mean"] = iv.mean
            row[f"{stat}_std"] = _std(values)
            row[f"{stat}_ci95_lo"], row[f"{stat}_ci95_hi"], row[f"{stat}_iqm"] = iv.lo, iv.hi, iv.iqm
            method = method or iv.method
        row["interval"] = method
        vals = [r.get("val_avg_acc") for r in runs]  # what selection reads; drawn dashed in acc_vs_strength
        row["val_avg_acc_mean"] = interval(vals).mean if all(v is not None for v in vals) else None
        rows.append(row)
    return rows


def _std(values: list[float]) -> float | None:
    import statistics

    return statistics.stdev(values) if len(values) > 1 else None


def extra_columns(rows: list[dict]) -> list[str]:
    """The columns of `summarize`'s rows beyond GROUP: the differing override keys."""
    if not rows:
        return []
    first = list(rows[0])
    return first[len(GROUP):first.index("n")]


def pct(mean, std=None, lo=None, hi=None) -> str:
    """'75.0 ± 5.0 [62.6, 87.4]' (percent): the mean, ± the std, [the 95 % interval] where there are."""
    if mean is None:
        return "n/a"
    text = f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")
    return text + ("" if lo is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]")


INTERVAL_NOTE = ("mean ± std [95 % interval over seeds: Student's t for n < 5, percentile bootstrap "
                 "(2000 resamples, seed 0) for n ≥ 5; the `interval` column says which], in percent; IQM: "
                 "interquartile mean (n ≥ 5)")


def _mark(on: str | None) -> str:
    return "" if on is None else "✓ (val)" if on == "val" else "✓ (TEST)"


def format_rows(rows: list[dict], selected: dict | None = None) -> list[list[str]]:
    """The summary as a header row and body rows of text. `selected`: {group key (GROUP + extras): 'val'
    or 'test'} of the selected strengths, marked in the last column ('✓ (val)'; '✓ (TEST)' where the runs
    had no validation split)."""
    extras = extra_columns(rows)
    header = [*GROUP, *extras, "n", "val avg acc (%)", "avg acc (%)", "IQM (%)", "forgetting (%)", "BWT (%)",
              "interval", "selected"]
    body = []
    for r in rows:
        key = tuple(r[k] for k in (*GROUP, *extras))
        stats = [pct(r[f"{s}_mean"], r[f"{s}_std"], r[f"{s}_ci95_lo"], r[f"{s}_ci95_hi"]) for s in STATS]
        iqm = "" if r["avg_acc_iqm"] is None else f"{100 * r['avg_acc_iqm']:.1f}"
        body.append([*(cell(r[k]) for k in (*GROUP, *extras)), str(r["n"]), pct(r["val_avg_acc_mean"]), stats[0], iqm,
                     stats[1], stats[2], r["interval"], _mark((selected or {}).get(key))])
    return [header, *body]
