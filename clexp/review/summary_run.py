"""The sweep-summary wandb run: one run per sweep folder (job type `sweep-summary`, in the sweep's group)
holding the report's tables — the jobs, the summary with intervals over seeds, the selected strengths with
their stability, the paired comparisons, the aggregates across scenarios — and the selected rows' numbers
in its summary, so that wandb's run table compares them.

- One run per sweep, whatever the number of times the sweep ends: its id is derived from the sweep
  folder, and a re-run of the sweep (sweep resume) resumes that run (online) or replaces its offline
  folder in `<sweep>/wandb` (offline: the folder holds only tables made from the jobs' results.json,
  which the new one holds again) instead of adding another run.
- Silent: no wandb banner on the console of the process that ends the sweep (under submitit or Ray
  too); one line of clexp's says where the run is.
- Usable at 10,000 jobs: the jobs table holds the first `JOBS_ROWS` jobs (the whole list is in the
  sweep's jobs.csv), every other table is one row per configuration, and the statistics are computed once
  (clexp.review.report.review).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

JOBS_ROWS = 1000
TABLE_ROWS = 5000


def run_id(sweep_dir: Path) -> str:
    """The summary run's wandb id: the same for every end of the same sweep folder."""
    digest = hashlib.sha1(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:16]
    return f"sweep-summary-{digest}"


def _table(wandb, table: list[list[str]], limit: int = TABLE_ROWS):
    return wandb.Table(columns=table[0], data=[list(map(str, row)) for row in table[1:limit + 1]])


def summary_numbers(selected: list[dict]) -> dict:
    """The selected rows as flat summary keys: `selected/<scenario>/<method>/test_avg_acc` (mean, ci95_lo,
    ci95_hi), its strength, the share of seed resamples selecting it, and whether the selection is unstable."""
    out = {}
    for r in selected:
        extras = "".join(f",{k}={v}" for k, v in r["extras"].items())
        base = f"selected/{r['dataset']}-{r['scenario']}-{r['incremental']}/{r['method']}{extras}"
        for name, key in (("test_avg_acc", "test_avg_acc_mean"), ("test_avg_acc_ci95_lo", "test_avg_acc_ci95_lo"),
                          ("test_avg_acc_ci95_hi", "test_avg_acc_ci95_hi"), ("test_forgetting", "test_forgetting_mean"),
                          ("val_avg_acc", "val_avg_acc"), ("strength", "strength"), ("n_seeds", "n_seeds"),
                          ("selected_share", "selected_share")):
            if r.get(key) is not None:
                out[f"{base}/{name}"] = r[key]
        out[f"{base}/unstable"] = bool(r["unstable"])
    return out


def _replace_offline(sweep_dir: Path, rid: str) -> None:
    """Remove the offline folders of an earlier end of this sweep's summary run (see the module's doc)."""
    for old in (Path(sweep_dir) / "wandb").glob(f"offline-run-*-{rid}"):
        shutil.rmtree(old, ignore_errors=True)


def summary_run(config, sweep_dir: Path, jobs: list[dict]) -> None:
    """With the wandb logger: the sweep's summary run (see the module's doc). Never fails the sweep."""
    logger = config.get("logger") or {}
    if not str(logger.get("_target_", "")).endswith("WandbLogging"):
        return
    try:
        import wandb

        from clexp.core.loggers import wandb_mode
        from clexp.core.naming import sweep_group
        from clexp.review import report
        from clexp.review.comparisons import aggregate_table
        from clexp.review.comparisons import table as paired_table
        from clexp.review.selection import selection_table

        mode = wandb_mode(str(logger.get("mode", "auto")))
        if mode == "disabled":
            return
        group = config.get("group") or logger.get("group") or sweep_group(sweep_dir)
        records = [r for r in report.collect([sweep_dir]) if r["status"] == "completed"]
        result = report.review(records) if records else None
        rid = run_id(sweep_dir)
        if mode == "offline":
            _replace_offline(sweep_dir, rid)
        run = wandb.init(project=logger.get("project", "clexp"), entity=logger.get("entity"), group=group,
                         name=f"{group}-summary", job_type="sweep-summary", dir=str(sweep_dir), mode=mode,
                         id=rid, resume="allow", reinit="create_new",
                         settings=wandb.Settings(silent=True, console="off"))
        columns = list(jobs[0])
        run.log({"sweep/jobs": wandb.Table(columns=columns, data=[[str(j[c]) for c in columns]
                                                                   for j in jobs[:JOBS_ROWS]])})
        run.summary["sweep/n_jobs"] = len(jobs)
        run.summary["sweep/n_failed"] = sum(j["status"] != "completed" for j in jobs)
        if result and result["rows"]:
            run.log({"sweep/summary": _table(wandb, report.format_rows(result["rows"], result["marked"]))})
            run.log({"sweep/selected": _table(wandb, selection_table(result["selected"], result["keys"]))})
            if result["paired"]:
                run.log({"sweep/paired": _table(wandb, paired_table(result["paired"]))})
            if result["aggregates"]:
                run.log({"sweep/aggregate": _table(wandb, aggregate_table(result["aggregates"]))})
            run.summary.update(summary_numbers(result["selected"]))
        run.finish()
        print(f"Sweep summary run: {group}-summary (wandb, in {Path(sweep_dir) / 'wandb'})")
    except Exception as err:  # noqa: BLE001 - the summary run is a convenience; the results are on disk
        print(f"(no wandb summary run: {type(err).__name__}: {err})")
