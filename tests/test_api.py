"""`clexp.run(overrides)`: the same config, run folder and results as the `clexp` command."""

import json

import pytest

import clexp
from clexp.config.errors import ConfigError
from tests.conftest import FAST


def test_run_returns_the_results_the_cli_writes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = clexp.run([*FAST, "train.epochs=1", "method=ewc", "hydra.run.dir=api"])
    saved = json.loads((tmp_path / "api" / "results.json").read_text())
    assert results["acc_matrix"] == saved["acc_matrix"] and results["metrics"] == saved["metrics"]
    assert saved["config"]["method"]["name"] == "ewc"
    assert (tmp_path / "api" / ".hydra" / "config.yaml").exists()


def test_run_resumes_a_folder_it_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = clexp.run([*FAST, "train.epochs=1", "hydra.run.dir=api"])
    again = clexp.run(["resume=api", "hydra.run.dir=ignored"])
    assert again["acc_matrix"] == first["acc_matrix"]  # nothing left to train: the same results


def test_bad_input_raises_instead_of_exiting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="method.lam"):
        clexp.run([*FAST, "method=ewc", "method.lam=-1", "hydra.run.dir=api"])
