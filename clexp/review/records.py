"""A sweep's jobs as records: what `clexp-report`, the selection and the report's HTML page all read.

`collect(paths)` finds every `results.json` below the paths and makes one small dict per job (completed
or failed). It is built to stay fast and small at 100,000 jobs:

- each job's resolved config is read once, from the file that already holds it (`results.json`, plain
  JSON); `.hydra/overrides.yaml` with PyYAML's C loader; of `.hydra/hydra.yaml` only the
  `hydra.runtime.choices` block is parsed (the rest of that file is Hydra's own settings). No OmegaConf
  node is made per job (a failed job without a config in its results.json is the exception: its
  `.hydra/config.yaml` is read and resolved where it can be);
- jobs are read one after the other and only what a report needs is kept: the GROUP columns, the metrics,
  the accuracy matrix (a NumPy array), the overrides, and the config's values at the keys that any job
  overrides (what `job_value` compares) — not the whole config. `collect(..., keep_config=True)` keeps the
  config too, for callers that read more of it (clexp-reproduce).

The helpers shared by the report's modules (numbers as short text, sort keys for mixed values, plain-text
and markdown tables, which runs diverged) live here too, so that report.py, selection.py, report_html.py
and comparisons.py import from this module and never from each other's private names.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import yaml

from clexp.core.naming import LEGACY_STRENGTH_KEYS
from clexp.core.naming import strength_key as strength_key_name

try:  # the C loader of PyYAML (libyaml); the pure-Python one where a build lacks it
    from yaml import CSafeLoader as YamlLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as YamlLoader

STATS = ("avg_acc", "forgetting", "bwt")
GROUP = ("dataset", "scenario", "incremental", "method", "strength")
SCENARIO = ("dataset", "scenario", "incremental")
# overrides already shown by a GROUP column (or the seed, the one key that rows average over)
COVERED = frozenset({"seed", "dataset", "dataset.name", "scenario", "scenario.name", "scenario.incremental",
                     "method", "method.name", "method.strength"})
# where a failed job without a config says its GROUP columns
FROM_OVERRIDES = {"dataset": ("dataset.name", "dataset"), "scenario": ("scenario.name", "scenario"),
                  "incremental": ("scenario.incremental",), "method": ("method.name", "method")}
REFUSED = ("ConfigError:", "DataError:")  # errors of validation: the job never trained
# an override YAML reads as the same string: no quotes, flow brackets, comments, anchors, `: ` or edge spaces
_PLAIN_OVERRIDE = re.compile(r"[A-Za-z0-9_+~$/.\\(-][^'\"{}\[\]#&*!|>%@`]*(?<![: ])")
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./@-]*")  # a config group or option name, as Hydra writes it
PRUNED = ("wandb", "checkpoints", "importance", "lightning_logs")  # folders of a job that hold no other job


class ReportError(Exception):
    """A path that does not exist or holds no results."""


# ------------------------------------------------------------------------------------------ small helpers


def finite(v) -> bool:
    """A real, finite number (not a bool, not None, not NaN or ±inf)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def num(x: float) -> str:
    """A number, short: 100, 0.5, 1e7, 1e-5."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], f"{x:g}")


def cell(v) -> str:
    """A table cell: '' for None, floats short (`num`), anything else as str."""
    if v is None:
        return ""
    if isinstance(v, float):
        return num(v)
    return str(v)


def order(v):
    """A sort key for mixed values: numbers, then strings, then None."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    if v is None:
        return (2, 0.0, "")
    return (1, 0.0, str(v))


def text_table(table: list[list[str]]) -> str:
    """A header row and body rows as aligned plain text."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def markdown_table(table: list[list[str]]) -> str:
    """A header row and body rows as a markdown pipe table."""
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def load_yaml(path: Path):
    """A YAML file as plain Python (C loader), None when it is absent or damaged."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=YamlLoader)
    except (OSError, yaml.YAMLError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ one job


def strength_of(method_cfg: dict) -> float | None:
    """The value of the method's strength (`method.strength` names its key: λ, c, ...); None for methods
    without one (naive, joint)."""
    key = strength_key_name(method_cfg)
    if key is None or method_cfg.get(key) is None:
        return None
    try:
        return float(method_cfg[key])
    except (TypeError, ValueError):
        return None


SYMBOLS = {"lam": "λ"}  # how a strength's key is printed (others as written: c, beta, ...)


def strength_name(method_cfg: dict) -> str:
    """The strength as the report prints it: 'λ' for `lam`, else its key (`c` for SI, `beta`, ...)."""
    key = strength_key_name(method_cfg)
    return SYMBOLS.get(key, key) if key else "λ"


def strength_key(method_cfg: dict) -> str:
    """The override key of the method's strength: `method.lam`, `method.c`, ..., or '' (no strength)."""
    key = strength_key_name(method_cfg)
    return f"method.{key}" if key and method_cfg.get(key) is not None else ""


def scalar(text: str):
    """An override's value as the config would hold it (int, float, bool, None or the string)."""
    low = text.strip().lower()
    if low in ("null", "none", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip().strip("'\"")


def parse_overrides(lines) -> dict[str, str]:
    """`.hydra/overrides.yaml`'s list → {key: value as written}; `+`/`++` dropped, `~key` deleted."""
    out = {}
    for line in map(str, lines):
        if line.startswith("~"):
            out[line[1:].split("=", 1)[0]] = "(deleted)"
            continue
        key, _, value = line.lstrip("+").partition("=")
        out[key] = value
    return out


def read_choices(path: Path) -> dict[str, str]:
    """`hydra.runtime.choices` of a job's `.hydra/hydra.yaml` (the option of every config group), parsing
    only that block of the file; the whole file where the block is not where Hydra writes it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return {}
    start = text.find("\n    choices:\n")
    block = None
    if start >= 0:
        block = {}
        for line in text[start + 1:].splitlines()[1:]:
            if not line.startswith("      "):
                break
            key, sep, value = line[6:].partition(": ")
            if not sep or not _PLAIN.fullmatch(key) or not _PLAIN.fullmatch(value):
                block = None  # not the plain `group: option` lines Hydra writes: YAML reads the file
                break
            block[key] = None if value == "null" else value
    if not isinstance(block, dict):
        try:
            full = yaml.load(text, Loader=YamlLoader) or {}
            block = ((full.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
        except (yaml.YAMLError, AttributeError):
            block = {}
    return {str(k): v for k, v in block.items()} if isinstance(block, dict) else {}


def _failed_config(folder: Path) -> dict:
    """A failed job's `.hydra/config.yaml`, resolved where it can be (OmegaConf: failed jobs only)."""
    path = folder / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception:  # noqa: BLE001 - a damaged file: the job is still reported, without it
        return {}
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an interpolation that needs Hydra's resolvers
        return OmegaConf.to_container(cfg, resolve=False)


def lookup(cfg, dotted: str):
    """(found, value) of a dotted key in a nested dict."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def describe(cfg: dict | None) -> dict:
    """The GROUP columns of a config (None where the config does not say), and its strength's name/key."""
    cfg = cfg or {}
    method = cfg.get("method") if isinstance(cfg.get("method"), dict) else {}
    dataset = cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else {}
    scenario = cfg.get("scenario") if isinstance(cfg.get("scenario"), dict) else {}
    return {"dataset": dataset.get("name"), "scenario": scenario.get("name"),
            "incremental": scenario.get("incremental"), "method": method.get("name"),
            "strength": strength_of(method), "strength_name": strength_name(method),
            "strength_key": strength_key(method)}


def _values_at(cfg: dict, keys) -> dict:
    """The config's leaves at `keys` ({key: (found, value)}); sub-trees as a marker only."""
    out = {}
    for key in keys:
        found, value = lookup(cfg, key)
        if found:
            out[key] = (True, "(group)" if isinstance(value, dict) else
                        json.dumps(value) if isinstance(value, list) else value)
    return out


# ------------------------------------------------------------------------------------------ all jobs


def results_files(paths: list[str | Path]) -> list[Path]:
    """Every results.json below the paths (a path may be a results.json itself), in a stable order. A
    folder with a results.json is a job: its own folders (`.hydra`, checkpoints, wandb) are not walked,
    nor are hidden folders (`.submitit`) — one `stat` per job instead of listing its folder."""
    files = []
    for root in map(Path, paths):
        if not root.exists():
            raise ReportError(f"{root} does not exist")
        if root.is_file():
            files.append(root)
            continue
        found = []
        stack = [str(root)]
        while stack:
            folder = stack.pop()
            candidate = os.path.join(folder, "results.json")
            if os.path.isfile(candidate):
                found.append(Path(candidate))
                continue
            try:
                with os.scandir(folder) as entries:
                    stack += [e.path for e in entries if e.is_dir() and not e.name.startswith(".")
                              and e.name not in PRUNED]
            except OSError:
                continue
        files += sorted(found)
    return files


def read_overrides(folder: Path) -> list[str]:
    """A job's `.hydra/overrides.yaml` (a list of `key=value` strings): its plain lines as they are, the
    file through the C YAML loader where a line is quoted or otherwise not plain; [] when absent."""
    try:
        text = (Path(folder) / ".hydra" / "overrides.yaml").read_text(encoding="utf-8")
    except OSError:
        return []
    lines = text.splitlines()
    if all(line.startswith("- ") and _PLAIN_OVERRIDE.fullmatch(line[2:]) and ": " not in line and " #" not in line
           for line in lines):
        return [line[2:] for line in lines]
    try:
        raw = yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError:
        return []
    return [str(o) for o in raw] if isinstance(raw, list) else []


def collect(paths: list[str | Path], keep_config: bool = False) -> list[dict]:
    """One record per results.json found below the paths (completed and failed jobs).

    A record: status, folder, seed, the GROUP columns (and strength_name / strength_key), the job's
    overrides (`overrides` as one string, `override_list`, `override_values` {key: value as written}),
    `choices` (the config groups' options), `values` (the resolved config at every key some job of
    these paths overrides: what `job_value` compares), `versions` (what the run recorded); completed
    jobs also `acc_matrix` (NumPy), the STATS and `val_avg_acc`; failed ones `error` (its first line).
    `keep_config=True` also keeps each job's whole resolved config as `config`."""
    files = results_files(paths)
    if not files:
        raise ReportError(f"no results.json under {', '.join(map(str, paths))}")
    # first pass: the overrides (small files), so that the second keeps only the config values compared
    overrides = [read_overrides(f.parent) for f in files]
    keys = sorted({k for ov in overrides for k in parse_overrides(ov)})
    # what most jobs share, held once: one dict per distinct `versions` / `choices`, one string per key
    versions: dict[str, dict] = {}
    choices: dict[tuple, dict] = {}
    key_names: dict[str, str] = {}
    records = []
    for f, override_list in zip(files, overrides):
        try:
            data = json.loads(f.read_bytes())
        except (OSError, ValueError) as err:
            raise ReportError(f"{f}: not a results file ({err})") from None
        if not isinstance(data, dict):
            raise ReportError(f"{f}: not a results file (not a JSON object)")
        folder = f.parent
        ov = {key_names.setdefault(k, k): v for k, v in parse_overrides(override_list).items()}
        chosen = read_choices(folder / ".hydra" / "hydra.yaml")
        job = {"folder": str(folder), "overrides": " ".join(override_list), "override_list": tuple(override_list),
               "override_values": ov, "choices": choices.setdefault(tuple(chosen.items()), chosen)}
        completed = data.get("status", "completed") == "completed"
        cfg = data.get("config") or ({} if completed else _failed_config(folder))
        job["values"] = _values_at(cfg, keys)
        described = describe(cfg)
        if keep_config:
            job["config"] = cfg
        if not completed:
            if described["strength"] is None:  # no config: the overrides may still name a strength
                given = {k.split(".", 1)[1]: scalar(v) for k, v in ov.items() if k.startswith("method.")}
                described["strength"] = strength_of(given)
            for column, names in FROM_OVERRIDES.items():
                if described[column] is None:
                    described[column] = next((ov[k] for k in names if k in ov), None)
            error = data.get("error") or ""
            records.append({"status": "failed", "seed": cfg.get("seed"),
                            "error": error.splitlines()[0] if error else "", **described, **job})
            continue
        v = data.get("versions") or {}
        vkey = json.dumps(v, sort_keys=True)
        metrics = data.get("metrics") or {}
        records.append({
            "status": "completed", "seed": data.get("seed"), **described,
            "acc_matrix": np.asarray(data["acc_matrix"], dtype=float),
            **{k: metrics.get(k) for k in STATS}, **job,
            "val_avg_acc": (data.get("val_metrics") or {}).get("avg_acc"),  # for clexp.review.selection
            "val_forgetting": (data.get("val_metrics") or {}).get("forgetting"),
            "versions": versions.setdefault(vkey, v),
        })
    return records


def job_value(record: dict, key: str):
    """The value of an override key for one job: the resolved config's value where the key is a value
    of the config (so `method.lam=1e2` and `method.lam=100`, or an override equal to the default, are
    the same), the option's name where it is a config group (`optimizer=adam`), None where the job
    has no such key."""
    if "values" in record:
        found, value = record["values"].get(key, (False, None))
    else:  # a record made by hand with its config (tests, older callers)
        found, value = lookup(record.get("config") or {}, key)
        value = "(group)" if isinstance(value, dict) else json.dumps(value) if isinstance(value, list) else value
    if found and value != "(group)":
        return value
    label = record["override_values"].get(key, record["choices"].get(key))
    if label is None:
        return "default" if found else None
    return label if found or key in record["choices"] else scalar(label)


def varying_keys(records: list[dict]) -> list[str]:
    """The override keys (command-line order) whose value differs between the jobs, but for the seed and
    the keys a GROUP column shows."""
    keys = []
    # the strength column shows these: every job's strength key, and the legacy ones (a failed job without config)
    seen = {r.get("strength_key") for r in records} - {"", None} | {f"method.{k}" for k in LEGACY_STRENGTH_KEYS}
    for r in records:
        for key in r["override_values"]:
            if key not in seen and key not in COVERED and not key.startswith("hydra."):
                seen.add(key)
                keys.append(key)
    return [k for k in keys if len({order(job_value(r, k)) for r in records}) > 1]


def diverged(records: list[dict]) -> list[dict]:
    """Runs that diverged at a strength: failed during training, or completed with a non-finite average
    accuracy (jobs refused by validation never trained and are not among them)."""
    return [r for r in records if r["strength"] is not None and (
        (r["status"] == "completed" and not finite(r["avg_acc"]))
        or (r["status"] != "completed" and not r["error"].startswith(REFUSED)))]
