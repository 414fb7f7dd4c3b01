"""Published setups: a preset (conf/experiment/*.yaml) may carry a table of per-method, per-scenario
settings (`preset.methods.<method>.<incremental>`, e.g. EWC's λ for class-IL). They are applied to
`method.*` after composition, unless the command line sets the same key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict


def apply_preset(cfg: DictConfig, user_overrides: list[str] = ()) -> list[str]:
    """Set the preset's values for the chosen method and scenario; return them as `key=value` strings."""
    preset = cfg.get("preset")
    if not preset or not preset.get("methods"):
        return []
    table = preset.methods.get(cfg.method.name)
    values = table.get(cfg.scenario.incremental) if table is not None else None
    if not values:
        return []
    given = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides}
    applied = []
    with open_dict(cfg):
        for key, value in values.items():
            full = f"method.{key}"
            if full in given:
                continue
            OmegaConf.update(cfg, full, value, merge=False)
            applied.append(f"{full}={value}")
    return applied
