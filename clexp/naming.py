"""Run names that say what ran, and the wandb group of a sweep.

`name: ${clexp_run_name:...}` in conf/config.yaml resolves to
`<method>[-lam<λ>|-c<c>]-<dataset>-<scenario>-<incremental>-s<seed>` (for example
`ewc-lam100-digits-split-class-s0`), or to the experiment's task for the geometry experiments.
Registered when `clexp` is imported (OmegaConf resolvers must exist before a config is resolved).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

STRENGTH_KEYS = ("lam", "c")


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def run_name(method: DictConfig, dataset: str, scenario: str, incremental: str, seed, task=None) -> str:
    if task:
        return str(task)
    parts = [str(method.get("name", "method"))]
    for key in STRENGTH_KEYS:
        if key in method and method.get(key) is not None:
            parts.append(f"{key}{_number(method[key])}")
            break
    return "-".join([*parts, str(dataset), str(scenario), str(incremental), f"s{seed}"])


def sweep_group(sweep_dir: str | Path) -> str:
    """An unnamed sweep's wandb group: the date and time of its folder plus a short hash of the sweep's
    overrides (from Hydra's `multirun.yaml` in the sweep folder when it is there)."""
    sweep_dir = Path(sweep_dir)
    overrides = ""
    saved = sweep_dir / "multirun.yaml"
    if saved.exists():
        try:
            overrides = " ".join(OmegaConf.load(saved).hydra.overrides.task)
        except Exception:  # noqa: BLE001 - the group name must never stop a job
            overrides = ""
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:6]
    return f"{sweep_dir.parent.name}_{sweep_dir.name}-{digest}"


def register() -> None:
    if not OmegaConf.has_resolver("clexp_run_name"):
        OmegaConf.register_new_resolver("clexp_run_name", run_name)
