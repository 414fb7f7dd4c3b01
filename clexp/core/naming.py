"""Run names that say what ran, and the wandb group of a sweep.

`name: ${clexp_run_name:...}` in conf/config.yaml resolves to
`<method>[-lam<λ>|-c<c>]-<dataset>-<scenario>-<incremental>-s<seed>` (for example
`ewc-lam30-digits-split-class-s0`), or to the experiment's task for the geometry experiments. A job of a
sweep also names the other keys its sweep varies or searches (`optimizer.lr=0.1,0.2`, an Optuna search
space): `ewc-lam30-digits-split-class-s0-lr0.1`, `...-adam` for a config group's option.
Registered when `clexp` is imported (OmegaConf resolvers must exist before a config is resolved).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

LEGACY_STRENGTH_KEYS = ("lam", "c")  # a method config without `strength` (written before it existed)


def strength_key(method) -> str | None:
    """The name of a method's strength under `method.` — what its config's `strength` says (`lam`, `c`,
    `beta`, ...; null: no strength, e.g. naive) — read by run names, the report, the selection and the
    stiffness warning. A config without `strength`: `lam` or `c`, whichever it sets."""
    if method is None:
        return None
    if "strength" in method:
        key = method.get("strength")
        return str(key) if key else None
    return next((k for k in LEGACY_STRENGTH_KEYS if method.get(k) is not None), None)


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


# keys the name already carries (a sweep over them adds nothing)
NAMED_KEYS = {"method", "seed", "dataset", "dataset.name", "scenario", "scenario.name", "scenario.incremental",
              "name", "method.strength"}


def run_name(method: DictConfig, dataset: str, scenario: str, incremental: str, seed, task=None,
             _root_: DictConfig | None = None) -> str:
    if task:
        return str(task)
    parts = [str(method.get("name", "method"))]
    key = strength_key(method)
    if key and method.get(key) is not None:
        parts.append(f"{key}{_number(method[key])}")
    callbacks = method.get("callbacks")
    if str(method.get("name")) != "er" and isinstance(callbacks, DictConfig) and "replay" in callbacks:
        parts.append("er")  # `+replay=er` (conf/replay/er.yaml) added experience replay to the method
    return "-".join([*parts, str(dataset), str(scenario), str(incremental), f"s{seed}", *swept_parts(_root_)])


def sweep_overrides(sweep_dir: str | Path) -> tuple[str, ...]:
    """The command-line overrides of the sweep in `sweep_dir` (Hydra's `multirun.yaml`; () without it).
    Read once per file version: every job's name and group resolve from it."""
    saved = Path(sweep_dir) / "multirun.yaml"
    try:
        return _read_overrides(str(saved), saved.stat().st_mtime_ns)
    except OSError:
        return ()


@functools.lru_cache(maxsize=8)
def _read_overrides(path: str, _mtime_ns: int) -> tuple[str, ...]:
    try:
        return tuple(str(o) for o in OmegaConf.load(path).hydra.overrides.task)
    except Exception:  # noqa: BLE001 - a name or group must never stop a job
        return ()


def _swept_keys() -> list[str]:
    """The keys that this job's sweep varies: Hydra's `hydra.sweeper.params` and the sweep overrides
    (`a=1,2`, `interval(...)`, `choice(...)`, ...) of the sweep's command line (its multirun.yaml)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    hc = HydraConfig.get()
    keys = [str(k) for k in (hc.sweeper.get("params") or {})]
    try:
        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides(hc.sweep.dir)))
    except Exception:  # noqa: BLE001 - a name must never stop a job
        parsed = []
    keys += [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
    return [k for k in dict.fromkeys(keys) if k not in NAMED_KEYS and not k.startswith("hydra.")]


def swept_parts(root: DictConfig | None) -> list[str]:
    """`lr0.1` for a swept value (the last part of its key), `adam` for a swept config group's option."""
    if root is None:
        return []
    from hydra.core.hydra_config import HydraConfig

    named = f"method.{strength_key(root.get('method'))}"  # already in the name
    keys = [k for k in _swept_keys() if k != named]
    choices = HydraConfig.get().runtime.choices if keys else {}
    parts = []
    for key in keys:
        if key in choices:
            parts.append(str(choices[key]))
        else:
            value = OmegaConf.select(root, key, default=None)
            if value is not None and not isinstance(value, DictConfig):
                parts.append(f"{key.rsplit('.', 1)[-1]}{_number(value)}")
    return parts


def sweep_group(sweep_dir: str | Path) -> str:
    """An unnamed sweep's wandb group: the date and time of its folder plus a short hash of the sweep's
    overrides (from Hydra's `multirun.yaml` in the sweep folder when it is there)."""
    sweep_dir = Path(sweep_dir)
    overrides = " ".join(sweep_overrides(sweep_dir))
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:6]
    return f"{sweep_dir.parent.name}_{sweep_dir.name}-{digest}"


def register() -> None:
    if not OmegaConf.has_resolver("clexp_run_name"):
        OmegaConf.register_new_resolver("clexp_run_name", run_name)
