"""Your own model, method and dataset, outside clexp: the example in examples/extension/ runs through
the CLI (a sweep, with --config-dir and PYTHONPATH) and through `clexp.run`; its method's strength is named
`beta` (`strength: beta`), which run names, `clexp-report`'s strength plot and its selection follow."""

import json
import os
from pathlib import Path

from tests.conftest import ROOT, clexp_cli

EXAMPLE = ROOT / "examples" / "extension"
USE = ["model=tiny_mlp", "method=drift", "dataset=blobs", "scenario.n_experiences=2", "train.epochs=2",
       "logger=none", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def test_user_components_run_in_a_sweep_from_the_command_line(tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")])}
    # the README's command: long enough for the tiny model to learn each experience, so that λ has something to keep
    out = clexp_cli(["--config-dir", str(EXAMPLE / "conf"), "-m", *USE, "train.epochs=20", "optimizer.lr=0.01",
                     "method.beta=0,10", "train.val_fraction=0.2", "hydra.sweep.dir=sweep"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/results.json"))]
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert {r["config"]["method"]["beta"] for r in results} == {0, 10}
    assert all(r["config"]["dataset"]["name"] == "blobs" for r in results)
    # the user's penalty did something: both runs learnt the first experience, and with λ = 10 it is kept better
    # than with 0 (class-IL fine-tuning overwrites it), while the second is still learnt
    by_lam = {r["config"]["method"]["beta"]: r for r in results}
    assert all(r["acc_matrix"][0][0] > 0.9 for r in results)
    assert by_lam[10]["acc_matrix"][-1][0] > by_lam[0]["acc_matrix"][-1][0] + 0.2
    assert by_lam[10]["metrics"]["forgetting"] < by_lam[0]["metrics"]["forgetting"]
    assert by_lam[10]["acc_matrix"][-1][1] > 0.5
    # the fourth strength name end to end: in the run names, and plotted and selected by clexp-report
    assert {r["config"]["name"].split("-")[1] for r in results} == {"beta0", "beta10"}
    from clexp.review.report import main as report

    report([str(tmp_path / "sweep"), "--out", str(tmp_path / "report")])
    summary = (tmp_path / "report" / "summary.csv").read_text()
    selected = (tmp_path / "report" / "selected.csv").read_text().splitlines()
    assert "method.beta" in selected[1] and (tmp_path / "report" / "acc_vs_strength.png").is_file(), selected
    assert {0.0, 10.0} == {float(row.split(",")[4]) for row in summary.splitlines()[1:]}, summary


def test_a_user_method_checks_its_values_like_clexp_s_own(tmp_path, monkeypatch):
    import pytest

    import clexp
    from clexp.config.errors import ConfigError

    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="method.beta"):
        clexp.run([*USE, "method.beta=-1", "hydra.run.dir=run"], config_dir=str(EXAMPLE / "conf"))


def test_user_components_through_the_python_entry_point(tmp_path, monkeypatch):
    import clexp

    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.chdir(tmp_path)
    results = clexp.run([*USE, "hydra.run.dir=run"], config_dir=str(EXAMPLE / "conf"))
    assert results["status"] == "completed" and len(results["acc_matrix"]) == 2
    assert Path("run/results.json").exists() and Path("run/.hydra/config.yaml").exists()
    saved = json.loads(Path("run/results.json").read_text())
    assert saved["acc_matrix"] == results["acc_matrix"]
    assert saved["config"]["model"]["_target_"] == "my_components.tiny_mlp"
