"""`clexp-report PATH [PATH ...]`: a sweep's results.json files → tables, statistics and plots.

Rows: one per configuration. Jobs are grouped by dataset × scenario × incremental × method × strength
(λ, or c for SI) and by every other override that differs between the jobs (read from each job's
`.hydra/overrides.yaml`, compared on the job's resolved config where the key is a value of it, and
on the option chosen where it is a config group such as `optimizer=adam`) — except `seed`: the
jobs left in a row are its seeds. Each such key gets a column of its own. A row gives n (its number of
runs), and for the final average accuracy, forgetting and BWT the mean ± std with a 95 % interval over
seeds (Student's t for n < 5, a percentile bootstrap with a fixed seed for n ≥ 5, named in the row), the
IQM for n ≥ 5, and the validation average accuracy the selection reads (non-finite values are left out).

Written into the output folder (the first path, or `--out`):
- `summary.csv`, `summary.md` (with the failed jobs), and the same table on stdout;
- `selected.csv`, `selected.md`: each method's strength selected on validation, its test interval, and how
  stable the selection is when the seeds are resampled (clexp/review/selection.py);
- `paired.csv`, `paired.md`: every selected method against naive and against the best method of its
  scenario, paired by seed: the mean difference with its interval, k of n seeds better, the probability of
  improvement, and the seeds a claim needs (clexp/review/comparisons.py);
- `aggregate.md` and `profiles.png` when the sweep spans several scenarios: IQM over scenarios with a
  stratified bootstrap interval and the performance profiles;
- `acc_vs_strength.png`: final average accuracy against strength, one panel per scenario (the strength
  selected on validation ringed, diverged strengths as red ×), and the mean accuracy matrices
  (`acc_matrices*.png`), clexp/review/report_figures.py;
- `jobs_table.csv`: every job (report.html lists the first ones);
- `report.html`: all of it in one self-contained file of bounded size (clexp/review/report_html.py).

`clexp-report` reads each job's config from its results.json (JSON) and the `.hydra` files with a C YAML
loader, one job after the other, keeping only what the report shows (clexp/review/records.py): about 20 s and
200 MB for 10,000 jobs, a minute for 100,000 on a 2-CPU machine (bench/bench_report.py).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from clexp.review.records import (  # noqa: F401 - the names of clexp.review.report's public interface, from where they live
    GROUP,
    SCENARIO,
    STATS,
    ReportError,
    collect,
    job_value,
    markdown_table,
    parse_overrides,
    strength_of,
    text_table,
    varying_keys,
)
from clexp.review.report_figures import plot_matrices, plot_strength  # noqa: F401
from clexp.review.summary import INTERVAL_NOTE, extra_columns, format_rows, summarize  # noqa: F401

JOBS_CSV = "jobs_table.csv"
FAILED_SHOWN = 50  # failed jobs printed on the console (all of them in jobs_table.csv)


def review(records: list[dict]) -> dict:
    """Everything the report shows, computed once: the swept keys, the summary rows, the selection, the
    paired comparisons and the aggregates across scenarios."""
    from clexp.review.comparisons import aggregate_rows, compare
    from clexp.review.selection import select

    keys = varying_keys(records)
    rows = summarize(records, keys)
    selected = select(records, keys) if rows else []
    marked = {(r["dataset"], r["scenario"], r["incremental"], r["method"], r["strength"],
               *(r["extras"][k] for k in keys)): r["selected_on"] for r in selected if r["strength"] is not None}
    return {"keys": keys, "rows": rows, "selected": selected, "marked": marked, "paired": compare(selected),
            "aggregates": aggregate_rows(selected)}


def write_jobs(records: list[dict], path: Path) -> Path:
    """Every job: folder, status, seed, method, strength, overrides, the test and validation numbers, error."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["folder", "status", "seed", "method", "strength", "overrides", "avg_acc", "forgetting", "bwt",
                         "val_avg_acc", "error"])
        for r in records:
            writer.writerow([r["folder"], r["status"], r.get("seed"), r.get("method"), r.get("strength"),
                             r.get("overrides", ""), *(r.get(k) for k in (*STATS, "val_avg_acc")), r.get("error", "")])
    return path


def write_report(records: list[dict], out_dir: Path, plots: bool = True, result: dict | None = None) -> dict[str, Path]:
    """summary.csv / .md (with failed jobs), selected.*, paired.*, aggregate.md, jobs_table.csv, the PNG
    plots and report.html in `out_dir`. `result`: `review(records)`, when the caller has it already."""
    from clexp.review.comparisons import write_aggregates, write_comparisons
    from clexp.review.selection import write_selection

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = review(records) if result is None else result
    keys, rows = result["keys"], result["rows"]
    written = {"csv": out_dir / "summary.csv", "md": out_dir / "summary.md"}
    if rows:
        with open(written["csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        written["csv"].write_text("")
    failed = [r for r in records if r["status"] != "completed"]
    grouping = ("dataset × scenario × incremental × method × strength"
                + "".join(f" × `{k}`" for k in keys))
    md = ["# Sweep summary", "", f"One row per configuration ({grouping}); {INTERVAL_NOTE}; ✓: the strength "
          "selected on validation.", "",
          markdown_table(format_rows(rows, result["marked"])) if rows else "(no completed run)"]
    if failed:
        md += ["", f"## Failed jobs ({len(failed)})", ""]
        md += [f"- `{r['folder']}` {r['overrides']}: {r['error']}" for r in failed]
    written["md"].write_text("\n".join(md) + "\n")
    written["jobs"] = write_jobs(records, out_dir / JOBS_CSV)
    if rows:  # the strength selected on validation per group (clexp/review/selection.py), then the paired comparisons
        written.update(write_selection(records, out_dir, keys, result["selected"]))
        written.update(write_comparisons(result["paired"], out_dir))
        written.update(write_aggregates(result["aggregates"], out_dir))
    if plots and rows:
        from clexp.review.report_figures import plot_profiles

        written["acc_vs_strength"] = plot_strength(records, out_dir / "acc_vs_strength.png", keys, rows,
                                                   result["selected"])
        if result["aggregates"]:
            written["profiles"] = plot_profiles(result["aggregates"], out_dir / "profiles.png")
        written.update(plot_matrices(records, out_dir / "acc_matrices.png", keys=keys))
    from clexp.review.report_html import write_html  # last: it embeds the figures and tables written above

    written["html"] = write_html(records, out_dir, written, result)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clexp-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="sweep folders (or results.json files)")
    parser.add_argument("--out", default=None, help="where to write the report (default: the first path)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--emit-overrides", action="store_true",
                        help="print the `clexp -m ...` command(s) running the selected strengths on the whole "
                             "stream (without scenario.use_first) over --seeds")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="the seeds of --emit-overrides (default 0,1,2,3,4)")
    args = parser.parse_args(argv)
    try:
        records = collect(args.paths)
    except ReportError as err:
        print(f"clexp-report: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (Path(args.paths[0]) if Path(args.paths[0]).is_dir()
                                           else Path(args.paths[0]).parent)
    result = review(records)
    written = write_report(records, out, plots=not args.no_plots, result=result)
    rows, selected = result["rows"], result["selected"]
    if rows:
        from clexp.review.comparisons import comparison_text
        from clexp.review.selection import emit_overrides, selection_text

        print(text_table(format_rows(rows, result["marked"])))
        print("\n" + selection_text(selected))
        print("\n" + comparison_text(result["paired"]))
        if args.emit_overrides:
            print("\nThe selected strengths on the whole stream:")
            print("\n".join(emit_overrides(selected, args.seeds)))
    failed = [r for r in records if r["status"] != "completed"]
    for r in failed[:FAILED_SHOWN]:
        print(f"FAILED {r['folder']} {r['overrides']}\n       {r['error']}")
    if len(failed) > FAILED_SHOWN:
        print(f"... and {len(failed) - FAILED_SHOWN} more failed jobs (all in {out / JOBS_CSV})")
    print("\nWritten: " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
