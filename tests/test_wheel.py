"""The wheel carries the configs: `pip install .` (not editable) gives a `clexp` that starts from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT

CONF = ROOT / "conf"
# what the build reads: the packaging files, the code and the configs (a copy, so that no build/ or
# *.egg-info lands in the working tree and parallel test runs do not share one build folder)
BUILD_INPUTS = ["pyproject.toml", "setup.py", "README.md", "clexp", "conf", "hydra_plugins"]


def _yaml_files() -> list[str]:
    return sorted(p.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from the working tree (no build isolation: setuptools of this environment)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", str(src), "-w", str(base / "dist")],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BuildBackendWarning" not in out.stderr, out.stderr
    (built,) = (base / "dist").glob("clexp-*.whl")
    return built


def test_config_dir_in_the_checkout_is_the_top_level_conf():
    from clexp.config.conf_source import CONFIG_PATH, config_dir

    assert Path(config_dir()) == CONF.resolve() and CONFIG_PATH == config_dir()


def test_wheel_holds_every_config_under_the_package(wheel):
    expected = _yaml_files()
    assert "config.yaml" in expected and len(expected) > 10
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        shipped = sorted(n[len("clexp/conf/"):] for n in names if n.startswith("clexp/conf/"))
        assert shipped == expected
        for rel in expected:
            assert zf.read(f"clexp/conf/{rel}") == (CONF / rel).read_bytes(), rel
    assert not any(n.startswith("conf/") for n in names)  # no top-level `conf` package in site-packages
    assert "clexp/config/conf_source.py" in names and "clexp/train.py" in names
    assert "hydra_plugins/clexp_optuna/resumable_sweeper.py" in names  # the sweeper Hydra finds by its namespace
    assert "hydra_plugins/__init__.py" not in names  # a namespace shared with Hydra's own plugins


@pytest.mark.slow
def test_installed_wheel_runs_the_default_experiment_from_another_folder(wheel, tmp_path):
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # the wheel's clexp comes first on sys.path (the editable install's .pth puts the checkout after it),
    # so the repository's clexp is not imported
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("CLEXP_DATA_DIR", None)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import clexp, clexp.config.conf_source as c; print(clexp.__file__); print(c.CONFIG_PATH)"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    module_file, config_path = probe.stdout.split()
    assert Path(module_file).is_relative_to(target), module_file
    assert Path(config_path) == target / "clexp" / "conf"

    run = subprocess.run(
        [sys.executable, "-m", "clexp", "train.epochs=1", "logger=none", "trainer.enable_progress_bar=false",
         "hydra.run.dir=run"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (work / "run" / "results.json").is_file()
    # Hydra records where the configs came from: the installed package's folder
    sources = OmegaConf.load(work / "run" / ".hydra" / "hydra.yaml").hydra.runtime.config_sources
    (main,) = [s for s in sources if s.provider == "main"]
    assert (main.schema, Path(main.path)) == ("file", target / "clexp" / "conf")
