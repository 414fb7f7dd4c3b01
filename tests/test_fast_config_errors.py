"""A bad config value is reported before torch / Lightning are imported (issue: a config error in < 2 s).

The rules come from each class's `ARGS`, read from source by `clexp.config.argspec` without importing the
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

from clexp.config.argspec import check_args, static_rules
from clexp.config.errors import ConfigError

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
    if not isinstance(obj, type):  # a function (a model factory): `fn.ARGS`, set after its definition
        return {k: (kind, tuple(o) if kind == "choice" else o) for k, (kind, o) in getattr(obj, "ARGS", {}).items()}
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
    rules = {"lam": ("number", {"low": 0}), "n": ("int", {"allow_none": True}), "v": ("choice", ("a", "b")),
             "w": ("ints", {}), "h": ("ints", {"one": True})}
    check_args(rules, lam=0.5, n=None, v="a", w=[4, 2], h=3, other=object())  # keys without a rule: unchecked
    check_args(rules, w=(), h=[1])
    for bad, key in (({"lam": -1}, "lam"), ({"n": 0}, "n"), ({"v": "c"}, "v"), ({"lam": "x"}, "lam"),
                     ({"w": 400}, "w"), ({"w": [4, 0]}, "w"), ({"w": "44"}, "w"), ({"h": [True]}, "h")):
        with pytest.raises(ConfigError) as info:
            check_args(rules, **bad)
        assert info.value.key == key


def test_static_rules_of_unknown_targets_are_empty():
    assert static_rules("no_such_module.Thing") == {}
    assert static_rules("clexp.models.ResNet18") == {}  # no ARGS: its constructor checks later
    assert static_rules("clexp.models.MLP") == {"hidden": ("ints", {})}  # a function's `MLP.ARGS = {...}`
    assert static_rules("clexp.data.digits.load_digits") == {}  # a function


_PROBE = """
import json, sys
from hydra import compose, initialize_config_dir
from clexp.config import conf_source
from clexp.config.errors import ConfigError
from clexp.core.validation import validate_light
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
    (["model.hidden=400"], "model.hidden"),
    (["model=cnn", "model.channels=8"], "model.channels"),
    (["dataset=image_folder"], "dataset.train_root"),
    (["dataset=arrays"], "dataset.path"),
    (["trainer.precision=64-true"], "trainer.precision"),
    (["trainer.precision=64"], "trainer.precision"),
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


# each case: the command line, then words its one line must hold (the key first)
CLI_CASES = {
    "mandatory value left out": (["dataset=image_folder"], ["dataset.train_root needs a value",
                                                            "dataset=image_folder", "dataset.train_root=..."]),
    "scalar for a list key": (["model.hidden=400"], ["model.hidden=400 is not allowed", "a list of integers",
                                                     "[400]"]),
    "group option that does not exist": (["method=ewx"], ["method='ewx'", "did you mean ewc?", "ewc, ewcpp"]),
    "optimizer that does not exist": (["optimizer=adamw"], ["optimizer='adamw'", "did you mean adam?",
                                                            "adam, ngd, sgd"]),
    "float64": (["trainer.precision=64-true"], ["trainer.precision='64-true'", "float32"]),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input_is_one_line_before_torch_in_under_2_s(tmp_path, case):
    """The CLI's whole run: exit 2, one line naming the key (no traceback), torch never imported and
    under 2 s of CPU time (the process's own; wall time on a shared machine says less)."""
    import resource

    argv, words = CLI_CASES[case]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "clexp", *argv, f"hydra.run.dir={tmp_path}/run"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [ln for ln in out.stderr.splitlines() if not ln.startswith("import time:")]
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("clexp: error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    imported = {ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if ln.startswith("import time:")}
    assert "torch" not in imported and "pytorch_lightning" not in imported
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained (results.json: the failure)
    assert cpu < 2.0, cpu


def test_a_sweeper_preset_without_its_plugin_names_the_extra(tmp_path, clexp_main, monkeypatch):
    """`experiment=optuna_lam` after a plain `pip install .` (no Optuna plugin): one line naming the
    extra, in a single run and in a sweep, before anything runs."""
    from clexp.launch import launchers
    real = launchers._importable
    monkeypatch.setattr(launchers, "_importable", lambda m: "optuna" not in m and real(m))
    for argv in (["experiment=optuna_lam"], ["-m", "experiment=optuna_lam", "method=ewc"],
                 ["-m", "hydra/sweeper=optuna", "method=ewc"]):
        out = clexp_main([*argv, "hydra.run.dir=run", "hydra.sweep.dir=sweep"], tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert "hydra/sweeper=optuna" in lines[0] and 'pip install "clexp[sweeps]"' in lines[0]
        assert ("experiment=optuna_lam" in lines[0]) == ("experiment=optuna_lam" in argv)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_group_options_of_a_config_dir_of_ones_own(tmp_path):
    """`--config-dir` adds options to a group: they are options, and a typo of theirs is named."""
    from clexp.config import conf_source
    from clexp.config.overrides import check_command_line

    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "mine.yaml").write_text("name: mine\n")
    check_command_line(["-m", f"--config-dir={tmp_path}", "method=mine,ewc"], conf_source.config_dir())
    with pytest.raises(ConfigError, match="did you mean mine"):
        check_command_line(["-m", f"--config-dir={tmp_path}", "method=ewc,mime"], conf_source.config_dir())


def test_a_float64_model_is_refused_when_built():
    """A model of one's own in float64: refused before training, naming the model."""
    from clexp.core.build import build_model
    from tests.conftest import compose

    cfg = compose(["model._target_=tests.test_fast_config_errors.double_mlp"])
    stream = type("S", (), {"input_shape": (4,), "n_outputs": 3, "__len__": lambda self: 2})()
    with pytest.raises(ConfigError) as info:
        build_model(cfg, stream)
    assert info.value.key == "model" and "float64" in str(info.value)
    cfg = compose(["model.hidden=[8]"])
    assert build_model(cfg, stream) is not None  # float32: built


def double_mlp(input_shape, n_outputs, **kwargs):
    from clexp.models import MLP

    return MLP(input_shape, n_outputs, **kwargs).double()


def test_adding_a_key_that_exists_says_to_set_it():
    from clexp.config import conf_source
    from clexp.config.overrides import check_command_line

    with pytest.raises(ConfigError, match=r"seed exists already: set it without the '\+' \(seed=\.\.\.\)") as info:
        check_command_line(["+seed=3"], conf_source.config_dir())
    assert info.value.key == "seed"
