"""Sweeps: basic launcher with a failing job, joblib in parallel, Optuna searching the strength."""

import csv
import json

import pytest
import yaml

from tests.conftest import clexp_cli

QUICK = ["experiment=smoke", "logger=none", "scenario.n_experiences=2"]


@pytest.mark.slow
def test_failed_job_keeps_the_others_and_is_listed(tmp_path):
    out = clexp_cli(["-m", *QUICK, "method=l2", "method.lam=0.1,-1,0.01", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").glob("*/results.json")}
    assert statuses == {"0": "completed", "1": "failed", "2": "completed"}
    assert "2 completed, 1 failed" in out.stdout and "method.lam=-1" in out.stdout
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "jobs.csv")))
    assert [r["status"] for r in rows] == ["completed", "failed", "completed"]
    assert "method.lam" in rows[1]["error"]


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    out = clexp_cli(["-m", "hydra/launcher=parallel", *QUICK, "method=naive,joint", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "sweep").glob("*/results.json"))) == 2
    assert "Joblib" in out.stderr or "joblib" in out.stdout + out.stderr


@pytest.mark.slow
def test_optuna_searches_the_strength_for_the_best_validation_accuracy(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = clexp_cli(["-m", "experiment=optuna_lam", *QUICK[1:], "train.epochs=1", "model.hidden=[32]",
                     "trainer.enable_progress_bar=false", "method=l2", "hydra.sweeper.n_trials=3",
                     "method.lam=tag(log,interval(0.001,1))", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    trials = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/results.json")]
    assert len(trials) == 3
    # objective: val, the default: Optuna maximised the validation splits' average accuracy
    best_trial = max(trials, key=lambda r: r["val_metrics"]["avg_acc"])
    assert best["best_value"] == pytest.approx(best_trial["val_metrics"]["avg_acc"])
    tied = [r["config"]["method"]["lam"] for r in trials  # small validation splits: ties happen
            if r["val_metrics"]["avg_acc"] == best_trial["val_metrics"]["avg_acc"]]
    assert any(best["best_params"]["method.lam"] == pytest.approx(lam) for lam in tied)
