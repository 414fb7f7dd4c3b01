"""The end of a Hydra multirun: one line per job (completed or failed) and `jobs.csv` in the sweep
folder. A failed job never costs the others their results; it is listed here with its error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from clexp.records import load_yaml


def job_rows(sweep_dir: Path) -> list[dict]:
    """One row per job folder that has a results.json (job number, overrides, status, metric or error)."""
    rows = []
    for results in sorted(Path(sweep_dir).glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        data = json.loads(results.read_text())
        overrides_file = results.parent / ".hydra" / "overrides.yaml"
        overrides = " ".join(map(str, load_yaml(overrides_file) or [])) if overrides_file.exists() else ""
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
    """With the wandb logger: the sweep's summary run (clexp/summary_run.py). Never fails the sweep."""
    from clexp.summary_run import summary_run as run

    run(config, sweep_dir, jobs)
