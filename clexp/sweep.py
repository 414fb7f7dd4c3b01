"""The end of a Hydra multirun: one line per job (completed or failed) and `jobs.csv` in the sweep
folder. A failed job never costs the others their results; it is listed here with its error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def job_rows(sweep_dir: Path) -> list[dict]:
    """One row per job folder that has a results.json (job number, overrides, status, metric or error)."""
    rows = []
    for results in sorted(Path(sweep_dir).glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        data = json.loads(results.read_text())
        overrides_file = results.parent / ".hydra" / "overrides.yaml"
        overrides = " ".join(OmegaConf.load(overrides_file)) if overrides_file.exists() else ""
        avg = (data.get("metrics") or {}).get("avg_acc")
        rows.append({
            "job": results.parent.name,
            "overrides": overrides,
            "status": data.get("status", "completed"),
            "avg_acc": avg,
            "val_avg_acc": (data.get("val_metrics") or {}).get("avg_acc"),
            "error": (data.get("error") or "").splitlines()[0] if data.get("error") else "",
        })
    return rows


class SweepSummary(Callback):
    """Hydra callback: print the jobs' outcome after a multirun and write `jobs.csv`; before it, refuse
    an optimising sweep on validation accuracy without a validation split (one line, exit 2)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        import sys

        from clexp.errors import ConfigError
        from clexp.selection import check_objective

        try:
            check_objective(config, str(config.hydra.sweeper.get("_target_", "")))
        except ConfigError as err:
            print(f"clexp: error: ConfigError: {err}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = job_rows(sweep_dir)
        if not rows:
            return
        with open(sweep_dir / "jobs.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        failed = [r for r in rows if r["status"] != "completed"]
        print(f"\nSweep {sweep_dir}: {len(rows) - len(failed)} completed, {len(failed)} failed")
        for r in rows:
            if r["status"] == "completed":
                acc = "n/a" if r["avg_acc"] is None else f"{100 * r['avg_acc']:.1f}%"
                val = "" if r["val_avg_acc"] is None else f"  val {100 * r['val_avg_acc']:.1f}%"
                print(f"  [ok]     {r['job']:>3}  avg_acc {acc:>6}{val}  {r['overrides']}")
            else:
                print(f"  [FAILED] {r['job']:>3}  {r['overrides']}\n             {r['error']}")
        print(f"Tables and plots: clexp-report {sweep_dir}")
        summary_run(config, sweep_dir, rows)


def summary_run(config: DictConfig, sweep_dir: Path, jobs: list[dict]) -> None:
    """With the wandb logger: one sweep-level run (job type `sweep-summary`, in the sweep's group) holding
    the jobs table and the report's mean ± std table, in the sweep folder. Never fails the sweep."""
    logger = config.get("logger") or {}
    if not str(logger.get("_target_", "")).endswith("WandbLogging"):
        return
    try:
        import wandb

        from clexp import report
        from clexp.loggers import wandb_mode
        from clexp.naming import sweep_group

        mode = wandb_mode(str(logger.get("mode", "auto")))
        if mode == "disabled":
            return
        group = config.get("group") or logger.get("group") or sweep_group(sweep_dir)
        table = report.format_rows(report.summarize([r for r in report.collect([sweep_dir])
                                                     if r["status"] == "completed"]))
        run = wandb.init(project=logger.get("project", "clexp"), entity=logger.get("entity"), group=group,
                         name=f"{group}-summary", job_type="sweep-summary", dir=str(sweep_dir), mode=mode,
                         reinit="create_new")
        columns = list(jobs[0])
        run.log({"sweep/jobs": wandb.Table(columns=columns, data=[[str(j[c]) for c in columns] for j in jobs])})
        if len(table) > 1:
            run.log({"sweep/summary": wandb.Table(columns=table[0], data=table[1:])})
        run.finish()
        print(f"Sweep summary run: {group}-summary (wandb, in {sweep_dir / 'wandb'})")
    except Exception as err:  # noqa: BLE001 - the summary run is a convenience; the results are on disk
        print(f"(no wandb summary run: {type(err).__name__}: {err})")
