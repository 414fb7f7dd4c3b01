"""Every job of a sweep owns exactly one wandb run, even when a job before it failed during training."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clexp_cli

QUICK = ["train.epochs=1", "model.hidden=[32]", "trainer.enable_progress_bar=false", "logger=wandb"]


def wandb_run(run_folder) -> dict:
    """The one offline wandb run of a job folder, as `wandb leet inspect --summary --json` reads it."""
    runs = list((run_folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    cli = Path(sys.executable).with_name("wandb")
    cli = str(cli) if cli.exists() else shutil.which("wandb")
    out = subprocess.run([cli, "leet", "inspect", "--summary", "--json", str(runs[0])], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_a_failed_job_does_not_leak_its_wandb_run_into_the_next(tmp_path):
    # c = 1e300 makes SI's penalty infinite in experience 1: the middle job fails during training
    out = clexp_cli(["-m", *QUICK, "method=si", "method.c=0.1,1e300,0.2", "hydra.sweep.dir=sweep"], tmp_path,
                    env={"WANDB_API_KEY": ""})
    assert out.returncode == 1, out.stderr  # the failed job: non-zero once all three have run
    sweep = tmp_path / "sweep"
    status = [json.loads((sweep / str(j) / "results.json").read_text())["status"] for j in range(3)]
    assert status == ["completed", "failed", "completed"]
    runs = [wandb_run(sweep / str(j)) for j in range(3)]
    assert len({r["run_id"] for r in runs}) == 3  # three distinct runs
    assert [r["config"]["method"]["c"] for r in runs] == [0.1, 1e300, 0.2]  # each with its own config
    assert [r["state"] for r in runs] == ["finished", "failed", "finished"]
    assert runs[0]["name"] == "si-c0.1-digits-split-class-s0"  # the run name says what ran
    # a sweep-level summary run in the sweep folder holds the jobs table and the report's table
    summaries = list((sweep / "wandb").glob("offline-run-*"))
    assert len(summaries) == 1
    cli = Path(sys.executable).with_name("wandb")
    cli = str(cli) if cli.exists() else shutil.which("wandb")
    inspected = subprocess.run([cli, "leet", "inspect", "--summary", "--json", str(summaries[0])],
                               capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0 and inspected.stdout.strip(), (inspected.stderr, sorted(summaries[0].rglob("*")),
                                                                   out.stdout[-1500:])
    summary = json.loads(inspected.stdout)
    assert summary["name"].endswith("-summary") and summary["summary"]["sweep/jobs"]["nrows"] == 3
    assert summary["summary"]["sweep/summary"]["nrows"] == 2  # two completed configurations (c = 0.1, 0.2)
    # the selection on validation, with the selected strength's interval (one seed: none) in the summary
    assert summary["summary"]["sweep/selected"]["nrows"] == 1
    assert summary["summary"]["selected/digits-split-class/si/n_seeds"] == 1
    assert summary["summary"]["selected/digits-split-class/si/strength"] in (0.1, 0.2)
