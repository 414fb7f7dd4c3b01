"""Resuming a sweep: re-run with the same `hydra.sweep.dir`, a job whose folder already holds a completed
`results.json` of the same config is skipped (one line says so) and returns its recorded objective, so a
pre-empted SLURM array, a killed machine or a sweep extended by more values loses nothing and repeats
nothing. Failed or unfinished jobs run again. Under every launcher: the check runs inside the job.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# keys that do not change what a job computes (a re-run may give them differently)
IGNORED = ("resume",)
# a published preset's records about its paper (clexp-reproduce's table reads them, no job does): a corrected
# published number or source re-runs nothing
PRESET_RECORDS = ("paper", "paper_source", "paper_spread")


def _comparable(config: dict) -> dict:
    out = {k: v for k, v in config.items() if k not in IGNORED}
    if isinstance(out.get("preset"), dict):
        out["preset"] = {k: v for k, v in out["preset"].items() if k not in PRESET_RECORDS}
    return out


def _as_run(cfg: DictConfig) -> dict:
    """The resolved config as results.json records it (after a published preset's per-method values)."""
    import copy

    from hydra.core.hydra_config import HydraConfig

    from clexp.config.presets import apply_preset

    cfg = copy.deepcopy(cfg)
    apply_preset(cfg, list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [])
    return OmegaConf.to_container(cfg, resolve=True)


def completed_results(cfg: DictConfig, run_dir: Path, multirun: bool) -> dict | None:
    """The results of this sweep job's earlier completed run in `run_dir` with the same resolved config
    (then print that the job is skipped), else None (the job runs)."""
    if not multirun:
        return None
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # damaged: run the job again
    if not isinstance(results, dict) or results.get("status") != "completed" or "config" not in results:
        return None
    try:
        now = _as_run(cfg)
    except Exception:  # noqa: BLE001 - an unresolvable config: let the job report it
        return None
    if _comparable(now) != _comparable(results["config"]):
        return None
    avg = (results.get("metrics") or {}).get("avg_acc")
    shown = "n/a" if avg is None else f"{100 * avg:.1f}%"
    from clexp.core.console import say

    # also in the job's train.log: under Ray (log_to_driver false) the console never sees a job's lines
    say(f"Skipped: {run_dir} already completed with this config (avg_acc {shown}); "
        "delete its results.json to run it again")
    return results


def skip(cfg: DictConfig, run_dir: Path, multirun: bool) -> tuple[bool, float | None]:
    """(True, the job's recorded objective) when this sweep job already completed, else (False, None)."""
    results = completed_results(cfg, run_dir, multirun)
    if results is None:
        return False, None
    try:
        from clexp.review.selection import objective_value
    except ImportError:  # pragma: no cover - before validation-based selection existed
        return True, (results.get("metrics") or {}).get("avg_acc")
    return True, objective_value(cfg, results)
