"""A Hydra multirun's two ends. Before it: every job's config is checked (`check_jobs`), and a sweep
with a bad job is refused whole, each bad job listed, before any job trains (exit 2). After it: one
line per job (completed or failed) and `jobs.csv` in the sweep folder. A job that fails while running
never costs the others their results; it is listed with its error, and the command exits 1 once
every job has finished."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from clexp.config.errors import ConfigError
from clexp.review.records import load_yaml

# jobs that failed in the last sweep of this process (SweepSummary): the command exits non-zero
FAILED: list[str] = []


class SweepConfigError(ConfigError):
    """Jobs of a sweep whose config is refused: every one listed, nothing run (exit 2)."""

    def __init__(self, bad: list[tuple[int, list[str], str]], n_jobs: int):
        if len(bad) == 1:
            i, job, why = bad[0]
            message = f"sweep job {i} ({' '.join(job)}): {why}; no job was run"
        else:
            lines = [f"  job {i} ({' '.join(job)}): {why}" for i, job, why in bad]
            message = "\n".join([f"{len(bad)} of the sweep's {n_jobs} jobs have a bad config; no job was run:", *lines])
        ValueError.__init__(self, message)
        self.key, self.value, self.allowed = "sweep", None, message


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The jobs (their overrides) Hydra's basic sweeper makes of a command line's overrides:
    `method.lam=1,-3` → [[method.lam=1], [method.lam=-3]] (the same expansion, Hydra's own code)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_jobs(argv: list[str], config_dir: str) -> None:
    """Before a sweep of Hydra's basic sweeper starts: compose every job's config and apply the checks
    that need no torch (`clexp.core.validation.validate_light`); raise `SweepConfigError` listing each job
    that would be refused, so that none trains. An optimising sweeper (Optuna) draws its jobs as it
    goes: its jobs are checked as they start."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from clexp.config.overrides import check_command_line, split_command_line
    from clexp.config.presets import apply_preset
    from clexp.core.validation import validate_light
    from clexp.launch.launchers import preset_choice

    overrides, dirs, multirun = split_command_line(argv)
    sweeper = next((a.partition("=")[2] for a in argv if a.lstrip("+").partition("=")[0] in (
        "hydra/sweeper", "override hydra/sweeper")), None) or preset_choice(argv, "hydra/sweeper")
    if not multirun or not overrides or sweeper not in (None, "basic"):
        return
    try:
        jobs = sweep_jobs(overrides)
    except HydraException:
        return  # Hydra's own message says what is wrong with the sweep's syntax
    extra = [f"hydra.searchpath=[{','.join('file://' + str(Path(d).resolve()) for d in dirs)}]"] if dirs else []
    bad = []
    with initialize_config_dir(config_dir, version_base="1.3", job_name="clexp"):
        for i, job in enumerate(jobs):
            try:
                cfg = compose("config", overrides=[*job, *extra])
                if cfg.get("task"):
                    continue  # a geometry experiment checks its own keys
                apply_preset(cfg, job)
                validate_light(cfg)
            except ConfigError as err:
                bad.append((i, job, err))
            except HydraException as err:
                bad.append((i, job, err))
    for k, (i, job, err) in enumerate(bad):
        if isinstance(err, HydraException):
            try:  # a key the job's group does not have: clexp's one line for it
                check_command_line([*job, *(f"--config-dir={d}" for d in dirs)], config_dir)
                bad[k] = (i, job, str(err).strip().splitlines()[0])
            except ConfigError as mine:
                bad[k] = (i, job, str(mine))
        else:
            bad[k] = (i, job, str(err))
    if bad:
        raise SweepConfigError(bad, len(jobs))


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

        from clexp.config.errors import ConfigError
        from clexp.review.selection import check_objective

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
        FAILED[:] = [r["job"] for r in failed]
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
    """With the wandb logger: the sweep's summary run (clexp/review/summary_run.py). Never fails the sweep."""
    from clexp.review.summary_run import summary_run as run

    run(config, sweep_dir, jobs)
