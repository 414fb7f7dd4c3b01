"""Keys a config group does not have, or that the chosen option does not use: one line, before Hydra's
multi-line composition error or a silently ignored value.

- `method.lam=10` with `method=si`: SI has no `lam`; Hydra would say "Key 'lam' is not in struct" and
  suggest `+method.lam=10`, which SI would then ignore. `check_command_line` composes the command's
  config first (run mode) and turns that into one line naming the key and the keys the group has.
- `+method.lam=10` with `method=si`: the key exists now but nothing reads it. `unused_method_keys`
  finds the method's top-level keys that none of its objects' nodes refer to.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from clexp.config.errors import ConfigError

# keys of a method node that the runner itself reads, or that hold its objects; `strength` names the key of
# the method's strength (run names, the report, warnings)
METHOD_OWN = ("name", "strength", "joint", "regularizer", "callbacks")
_REF = re.compile(r"\$\{method\.([A-Za-z0-9_]+)")


def override_key(override: str) -> str:
    """The key a command-line override sets: `+method.lam=3` → `method.lam` (also `~key`, `key=value`)."""
    return override.lstrip("+~").split("=", 1)[0]


def unused_method_keys(method: DictConfig) -> list[str]:
    """Top-level keys of the method node that no interpolation inside it refers to."""
    raw = "".join(OmegaConf.to_yaml(method[k]) for k in ("regularizer", "callbacks")
                  if k in method and isinstance(method[k], DictConfig))
    used = set(_REF.findall(raw))
    return [k for k in method if k not in METHOD_OWN and k not in used]


def check_method_keys(method: DictConfig) -> None:
    strength = method.get("strength")
    if strength is not None and (not isinstance(strength, str) or strength not in method):
        raise ConfigError("method.strength", strength,
                          "the name of one of the method's own keys (lam, c, ...), or null")
    unused = unused_method_keys(method)
    if unused:
        key = unused[0]
        used = [k for k in method if k not in METHOD_OWN and k not in unused]
        raise ConfigError(f"method.{key}", OmegaConf.to_container(method, resolve=False)[key],
                          f"method={method.get('name')} does not use it (its keys: {', '.join(used) or 'none'})")


def split_command_line(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """(overrides, config dirs, multirun?) of a clexp command line."""
    overrides, dirs, multirun, i = [], [], False, 0
    while i < len(argv):
        a = argv[i]
        if a in ("-m", "--multirun"):
            multirun = True
        elif a in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
            i += 1
        elif a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
        elif a.startswith("-"):
            return [], [], True  # --help, --cfg, -c ...: leave the command to Hydra
        elif "=" in a and not a.lstrip("+~").startswith("hydra"):
            overrides.append(a)
        i += 1
    return overrides, dirs, multirun


def group_options(group: str, dirs: list[str]) -> list[str] | None:
    """The options of the config group `group` (`method`, `model`, ...) in the config folders `dirs`:
    the names of its .yaml files; None when no folder has that group."""
    from pathlib import Path

    found = [Path(d) / group for d in dirs if (Path(d) / group).is_dir()]
    if not found:
        return None
    return sorted({p.stem for folder in found for p in folder.glob("*.yaml")})


_PLAIN = re.compile(r"[A-Za-z0-9_.\-/]+")


def check_group_options(overrides: list[str], dirs: list[str]) -> None:
    """Raise `ConfigError` for a group option that does not exist (`method=ewx`, and each value of a
    sweep's `method=ewc,ewx`): one line with the closest option and the list, instead of Hydra's error."""
    import difflib

    for override in overrides:
        name, _, value = override.lstrip("+~").partition("=")
        if name.startswith("override "):
            name = name[len("override "):].strip()
        if "." in name or name.startswith("hydra") or not value or "(" in value:
            continue  # a key, not a group; Hydra's own groups (launchers: clexp.launch.launchers); sweep functions
        options = group_options(name, dirs)
        if options is None:
            continue
        for choice in value.split(","):
            choice = choice.strip().strip("'\"")
            if choice in options or choice in ("null", "") or not _PLAIN.fullmatch(choice):
                continue
            close = difflib.get_close_matches(choice, options, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(name, choice, f"{hint}{name} is one of {', '.join(options)}")


def check_command_line(argv: list[str], config_dir: str) -> None:
    """Raise `ConfigError` for a group option that does not exist (run and sweep), or an override of a
    key its group does not have (run mode only)."""
    overrides, dirs, multirun = split_command_line(argv)
    check_group_options(overrides, [*dirs, config_dir])
    if multirun or not overrides:
        return
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    extra = [f"hydra.searchpath=[{','.join('file://' + str(Path(d).resolve()) for d in dirs)}]"] if dirs else []

    def composed(items):
        with initialize_config_dir(config_dir, version_base="1.3", job_name="clexp"):
            return compose("config", overrides=[*items, *extra])

    try:
        composed(overrides)
    except ConfigCompositionException as err:
        appended = re.search(r"Could not append to config. An item is already at '([^']+)'", str(err))
        if appended:  # `+dataset.augment=[...]` where the group has the key: set it, do not add it
            key = appended.group(1)
            given = next((o for o in overrides if o.startswith("+") and override_key(o) == key), None)
            if given is not None:
                raise ConfigError(key, given.split("=", 1)[1],
                                  f"{key} exists already: set it without the '+' ({key}=...)") from None
        match = re.search(r"Could not override '([^']+)'", str(err))
        if not match:
            return  # Hydra's own message says what is wrong
        key = match.group(1)
        given = next(o for o in overrides if o.split("=", 1)[0].lstrip("~") == key)
        rest = [o for o in overrides if o is not given]
        try:
            cfg = composed(rest)
        except Exception:  # noqa: BLE001 - another mistake: Hydra reports it
            return
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.select(cfg, parent) if parent else cfg
        while node is None and parent:  # `method.callbacks.fisher.variant`: name the nearest node that exists
            parent = parent.rsplit(".", 1)[0] if "." in parent else ""
            node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = [k for k in node if not str(k).startswith("_")] if isinstance(node, DictConfig) else []
        if parent == "method":
            keys = [k for k in keys if k not in METHOD_OWN]
        owner = f"{parent}={cfg[parent].get('name')}" if parent in ("method",) else (parent or "the config")
        missing = key[len(parent):].lstrip(".")
        raise ConfigError(key, given.split("=", 1)[1],
                          f"{owner} has no {missing!r} (its keys: {', '.join(keys) or 'none'})") from None
