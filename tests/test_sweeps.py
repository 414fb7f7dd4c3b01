"""Sweeps under the basic launcher: a failing job. (joblib and the other launchers: test_launchers.py;
Optuna: test_optuna_study.py.)"""

import csv
import json

import pytest

from tests.conftest import clexp_cli

QUICK = ["experiment=smoke", "logger=none", "scenario.n_experiences=2"]


def test_a_bad_job_refuses_the_sweep_before_any_job_trains(tmp_path, clexp_main):
    """Every job's config is checked first: the bad ones are listed (a bad value, a key the job's method
    does not have), none of the jobs runs, exit 2."""
    import time

    start = time.perf_counter()
    out = clexp_main(["-m", *QUICK, "method=ewc,si", "method.lam=1,-3", "hydra.sweep.dir=sweep"], tmp_path)
    took = time.perf_counter() - start
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "clexp: error: ConfigError: 3 of the sweep's 4 jobs have a bad config; no job was run:"
    assert lines[1].startswith("  job 1 (experiment=smoke logger=none scenario.n_experiences=2 method=ewc "
                               "method.lam=-3): method.lam=-3 is not allowed")
    assert "job 2" in lines[2] and "method=si has no 'lam'" in lines[2] and "job 3" in lines[3]
    assert "Traceback" not in out.stderr and not (tmp_path / "sweep").exists()
    assert took < 5  # composing 4 configs, no data read, no torch needed
    out = clexp_main(["-m", *QUICK, "method=l2", "method.lam=0.1,-1", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "clexp: error: ConfigError: sweep job 1 (experiment=smoke logger=none scenario.n_experiences=2 method=l2 "
        "method.lam=-1): method.lam=-1 is not allowed: a number >= 0; no job was run"]


@pytest.mark.slow
def test_failed_job_keeps_the_others_is_listed_and_the_sweep_exits_1(tmp_path):
    """A job that fails while running (more CPU devices than the machine has: found when the job builds
    its Trainer) costs the others nothing; the summary lists it, and the sweep exits 1 at the end."""
    out = clexp_cli(["-m", *QUICK, "method=l2", "trainer.accelerator=cpu", "trainer.devices=1,4096,1",
                     "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 1, out.stderr
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").glob("*/results.json")}
    assert statuses == {"0": "completed", "1": "failed", "2": "completed"}
    assert "2 completed, 1 failed" in out.stdout and "trainer.devices=4096" in out.stdout
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "jobs.csv")))
    assert [r["status"] for r in rows] == ["completed", "failed", "completed"]
    assert "trainer.devices" in rows[1]["error"]
