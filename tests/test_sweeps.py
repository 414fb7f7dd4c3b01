"""Sweeps under the basic launcher: a failing job. (joblib and the other launchers: test_launchers.py;
Optuna: test_optuna_study.py.)"""

import csv
import json

import pytest

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


