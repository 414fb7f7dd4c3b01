"""A bad config value is reported before torch / Lightning are imported (issue: a config error in < 2 s).

The rules come from each class's `ARGS`, read from source by `clexp.argspec` without importing the
module: the static reading must equal the classes' own rules, and the CLI must stop on them with the
usual one line and exit 2 without importing torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clexp.argspec import check_args, static_rules
from clexp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _targets() -> set[str]:
    """Every `_target_` of a clexp class in conf/."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            t = node.get("_target_")
            if isinstance(t, str) and t.startswith("clexp."):
                found.add(t)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in (ROOT / "conf").rglob("*.yaml"):
        walk(yaml.safe_load(path.read_text()))
    return found


def _runtime_rules(target: str) -> dict:
    from hydra.utils import get_object

    obj = get_object(target)
    rules: dict = {}
    for cls in reversed(getattr(obj, "__mro__", ())):
        rules.update({k: (kind, tuple(o) if kind == "choice" else o)
                      for k, (kind, o) in cls.__dict__.get("ARGS", {}).items()})
    return rules


def test_static_rules_equal_the_classes_own():
    targets = _targets()
    assert len(targets) > 15
    with_rules = 0
    for target in sorted(targets):
        static, runtime = static_rules(target), _runtime_rules(target)
        assert static == runtime, target
        with_rules += bool(runtime)
    assert with_rules >= 10  # the methods, scenarios, optimizer, trainer, logger


def test_check_args_applies_each_kind():
    rules = {"lam": ("number", {"low": 0}), "n": ("int", {"allow_none": True}), "v": ("choice", ("a", "b"))}
    check_args(rules, lam=0.5, n=None, v="a", other=object())  # keys without a rule are not checked
    for bad, key in (({"lam": -1}, "lam"), ({"n": 0}, "n"), ({"v": "c"}, "v"), ({"lam": "x"}, "lam")):
        with pytest.raises(ConfigError) as info:
            check_args(rules, **bad)
        assert info.value.key == key


def test_static_rules_of_unknown_targets_are_empty():
    assert static_rules("no_such_module.Thing") == {}
    assert static_rules("clexp.models.MLP") == {}  # no ARGS: its constructor checks later
    assert static_rules("clexp.data.digits.load_digits") == {}  # a function


_PROBE = """
import json, sys
from hydra import compose, initialize_config_dir
from clexp import conf_source
from clexp.errors import ConfigError
from clexp.validation import validate_light
for overrides in json.loads(sys.argv[1]):
    with initialize_config_dir(conf_source.config_dir(), version_base="1.3", job_name="t"):
        cfg = compose("config", overrides=overrides)
    try:
        validate_light(cfg)
        print("OK", "torch" in sys.modules or "pytorch_lightning" in sys.modules)
    except ConfigError as err:
        print("ERR", err.key, "torch" in sys.modules or "pytorch_lightning" in sys.modules)
"""

CASES = [
    (["method=ewc", "method.lam=-1"], "method.lam"),
    (["method=si", "method.c=-2"], "method.c"),
    (["method=si", "method.xi=0"], "method.xi"),
    (["method=ewc", "method.fisher.variant=bogus"], "method.fisher.variant"),
    (["method=mas", "method.chunk_size=0"], "method.chunk_size"),
    (["method=ewc", "method.fisher.clip_max=0"], "method.fisher.clip_max"),
    (["method=online_ewc", "method.fisher.variant=argmax"], "method.fisher.variant"),
    (["method=mas", "method.variant=batch"], "method.variant"),
    (["method=mas", "method.output_mean=2"], "method.output_mean"),
    (["method=kfac_ewc", "method.callbacks.importance.samples=0"], "method.callbacks.importance.samples"),
    (["method=lwf", "method.temperature=0"], "method.temperature"),
    (["scenario.n_experiences=0"], "scenario.n_experiences"),
    (["scenario.incremental=tasks"], "scenario.incremental"),
    (["optimizer.lr=-1"], "optimizer.lr"),
    (["optimizer=ngd", "optimizer.beta=2"], "optimizer.beta"),
    (["logger=wandb", "logger.mode=x"], "logger.mode"),
    (["trainer.checkpoint_every_n_steps=0"], "trainer.checkpoint_every_n_steps"),
    (["train.epochs=0"], "train.epochs"),
    (["method=ewcpp", "method.alpha=0"], "method.alpha"),
    (["method=rwalk", "method.eps=0"], "method.eps"),
    (["method=rwalk", "method.variant=both"], "method.variant"),
    (["method=mas", "method.consolidate_every=0"], "method.consolidate_every"),
    (["scenario.boundaries=blurry", "scenario.blur=1"], "scenario.blur"),
    (["method=gpm", "method.threshold=1.01"], "method.threshold"),
    (["method=gpm", "method.hidden_threshold=1.01"], "method.hidden_threshold"),
    (["method=agem", "method.memory_batch_size=0"], "method.memory_batch_size"),
]


def test_light_validation_names_the_key_without_torch():
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cases = [*CASES, ([], None)]  # the defaults pass
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps([o for o, _ in cases])], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    lines = out.stdout.splitlines()
    assert len(lines) == len(cases), out.stderr[-2000:]
    for (overrides, key), line in zip(cases, lines):
        assert line == (f"ERR {key} False" if key else "OK False"), (overrides, line)  # False: no torch yet


def test_cli_stops_before_importing_torch(tmp_path):
    """`python -X importtime -m clexp method.lam=-1` lists every import: torch must not be among them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "clexp", "method=ewc", "method.lam=-1",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("clexp: error:")]
    assert errors == ["clexp: error: ConfigError: method.lam=-1 is not allowed: a number >= 0"]
    imported = {ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")}
    assert "hydra" in imported
    assert "torch" not in imported and "pytorch_lightning" not in imported
