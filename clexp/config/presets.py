"""Published setups: a preset (conf/experiment/*.yaml) may carry a table of per-method, per-scenario
settings (`preset.methods.<method>.<incremental>`, e.g. EWC's λ for class-IL). They are applied to
`method.*` after composition, unless the command line sets the same key.

`preset.estimators.<method>` records what the paper's code computed where it differs from clexp's
default estimator (e.g. Hsu et al. 2018's EWC: the Fisher of the argmax label, batch size 1), as
`set` (method keys, nested: `{fisher: {variant: predicted}}`) and `scale` (factors on the preset's
values that make clexp's penalty equal the paper's: `{lam: 2}` where the paper's code has no ½; a
factor may depend on the scenario, `{lam: {task: 0.8, domain: 0.7}}`), with `note` saying where in
the code. `preset.faithful=true` applies them: the run computes what the paper's code computed.
`preset.faithful=false` (the default): clexp's own estimators at the published strengths.

`preset.paper.<method>.<incremental>` holds the published numbers ({mean, std}: final average
accuracy in %), read by `clexp-reproduce` (clexp/reproduce.py)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from clexp.config.errors import ConfigError
from clexp.config.overrides import override_key


def _flat(tree, prefix: str = "") -> dict:
    """{'fisher': {'variant': 'x'}} → {'fisher.variant': 'x'}."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value
    return out


def faithful(cfg: DictConfig) -> bool:
    """`preset.faithful` (false when the config has no preset or the preset no such key)."""
    preset = cfg.get("preset") or {}
    value = preset.get("faithful", False)
    if not isinstance(value, bool):
        raise ConfigError("preset.faithful", value, "true (the papers' own estimators) or false")
    return value


def preset_values(cfg: DictConfig) -> dict:
    """The method keys (dotted, relative to `method.`) the preset sets for this method and scenario:
    its table's values, and in faithful mode the paper's estimator with the scaled strengths."""
    preset = cfg.get("preset")
    if not preset:
        return {}
    method, incremental = cfg.method.name, cfg.scenario.incremental
    table = (preset.get("methods") or {}).get(method)
    values = table.get(incremental) if table is not None else None
    values = dict(_flat(OmegaConf.to_container(values, resolve=True))) if values else {}
    if not faithful(cfg):
        return values
    est = (preset.get("estimators") or {}).get(method)
    if not est:
        return values
    est = OmegaConf.to_container(est, resolve=True)
    values.update(_flat(est.get("set") or {}))
    for key, factor in _flat({k: v for k, v in (est.get("scale") or {}).items()}).items():
        if "." in key and key.rsplit(".", 1)[1] in ("task", "domain", "class"):  # a per-scenario factor
            key, scenario = key.rsplit(".", 1)
            if scenario != incremental:
                continue
        base = values.get(key, OmegaConf.select(cfg.method, key))
        values[key] = base * factor
    return values


def apply_preset(cfg: DictConfig, user_overrides: list[str] = ()) -> list[str]:
    """Set the preset's values for the chosen method and scenario; return them as `key=value` strings."""
    values = preset_values(cfg)
    if not values:
        return []
    given = {override_key(o) for o in user_overrides}
    applied = []
    with open_dict(cfg):
        for key, value in values.items():
            full = f"method.{key}"
            if full in given:
                continue
            OmegaConf.update(cfg, full, value, merge=False)
            applied.append(f"{full}={value}")
    return applied
