"""Sweeps under every launcher (basic, joblib, submitit's local executor; Ray: test_launchers_ray.py, a
file of its own so that xdist's --dist loadfile runs it beside this one): a job that goes NaN in training
is recorded failed and the others complete, each job owns one wandb run and its own folder, jobs.csv lists
every job, and re-running the sweep in the same folder skips the completed jobs."""

import csv
import json
import re

import pytest

from tests.conftest import clexp_cli

# c = 1e300 makes SI's penalty NaN at experience 1, step 1: the middle job fails during training
SWEEP = ["experiment=smoke", "scenario.n_experiences=2", "model.hidden=[16]", "method=si",
         "method.c=0.1,1e300,0.2", "plots=false", "hydra.sweep.dir=sweep"]
STATUSES = ["completed", "failed", "completed"]
# Ray's single-machine mode: every Ray address on loopback (127.0.0.1), not the machine's network address
RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

LAUNCHERS = {
    "parallel": (["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"], "hydra_plugins.hydra_joblib_launcher"),
    "submitit_local": (["hydra/launcher=submitit_local"], "hydra_plugins.hydra_submitit_launcher"),
    # a Ray instance of the sweep's own on this machine: 2 CPUs, one per job (conf/hydra/launcher/ray.yaml)
    "ray": (["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2"], "hydra_plugins.hydra_ray_launcher"),
}


def _statuses(sweep):
    return [json.loads((sweep / str(j) / "results.json").read_text())["status"] for j in range(3)]


def _wandb_runs(folder):
    """The ids of the offline wandb runs in a job folder (offline-run-DATE_TIME-ID)."""
    return [p.name.rsplit("-", 1)[1] for p in sorted((folder / "wandb").glob("offline-run-*"))]


def _skipped_lines(sweep, out) -> set[str]:
    """The jobs that said 'Skipped:' (console, submitit's per-job logs, or the jobs' train.log: Ray keeps the
    jobs' output off the console)."""
    text = out.stdout + out.stderr + "".join(p.read_text() for p in sweep.glob(".submitit/*/*.out")) \
        + "".join(p.read_text() for p in sweep.glob("*/train.log"))
    return set(re.findall(r"Skipped: \S*?(\d+) already completed", text))


def check_sweep_records_every_job_and_resumes(launcher, tmp_path):
    """The 3-job sweep (one job fails in training) under `launcher`, then the same sweep again."""
    args, plugin = LAUNCHERS[launcher]
    pytest.importorskip(plugin)
    if launcher == "ray":
        pytest.importorskip("ray")
    env = {"WANDB_API_KEY": "", **(RAY_LOOPBACK if launcher == "ray" else {})}
    out = clexp_cli(["-m", *args, *SWEEP, "logger=wandb"], tmp_path, env=env, timeout=600)
    assert out.returncode == 1, out.stderr[-3000:]  # a job failed: non-zero once every job has finished
    sweep = tmp_path / "sweep"
    assert _statuses(sweep) == STATUSES
    rows = list(csv.DictReader(open(sweep / "jobs.csv")))  # written in the launching process
    assert [r["status"] for r in rows] == STATUSES and "1e+300" in rows[1]["overrides"]
    assert "non-finite" in rows[1]["error"]
    runs = [_wandb_runs(sweep / str(j)) for j in range(3)]
    assert [len(r) for r in runs] == [1, 1, 1], runs  # each job its own run, in its own folder
    assert len({r[0] for r in runs}) == 3
    completed = {j: (sweep / str(j) / "results.json").read_text() for j in (0, 2)}
    if launcher == "ray":  # the jobs' output stays in their folders: no `(_run_job pid=...)` lines, none after
        console = out.stdout + out.stderr  # the summary
        assert "pid=" not in console and "_run_job" not in console, console[-3000:]
        assert "after 0 (1/2 experiences)" in (sweep / "0" / "train.log").read_text()

    again = clexp_cli(["-m", *args, *SWEEP, "logger=wandb"], tmp_path, env=env, timeout=600)
    assert again.returncode == 1, again.stderr[-3000:]  # the failed job failed again
    assert _skipped_lines(sweep, again) == {"0", "2"}  # one line for each skipped job, none for the failed one
    assert {j: (sweep / str(j) / "results.json").read_text() for j in (0, 2)} == completed
    assert [len(_wandb_runs(sweep / str(j))) for j in (0, 2)] == [1, 1]  # no new run for a skipped job
    assert _statuses(sweep) == STATUSES  # the failed job ran again (and failed again)
    rows = list(csv.DictReader(open(sweep / "jobs.csv")))
    assert [r["status"] for r in rows] == STATUSES
    assert [r["avg_acc"] for r in rows] == [json.loads(completed[0])["metrics"]["avg_acc"].__str__(), "",
                                            json.loads(completed[2])["metrics"]["avg_acc"].__str__()]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_sweep_under_launcher_records_every_job_and_resumes(launcher, tmp_path):
    check_sweep_records_every_job_and_resumes(launcher, tmp_path)
