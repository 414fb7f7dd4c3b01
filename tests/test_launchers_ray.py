"""Hydra's Ray launcher (hydra/launcher=ray, the `ray` extra; CI installs it with `make install-ray`, and
these tests skip without it): the sweep of test_launchers.py on a Ray instance of the sweep's own, and a
sweep on an existing Ray cluster joined by its address. A file of its own, so that xdist's --dist loadfile
runs it beside test_launchers.py (each file ~1.5 minutes on one worker)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import clexp_cli
from tests.test_launchers import RAY_LOOPBACK, check_sweep_records_every_job_and_resumes


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sweep_under_ray_records_every_job_and_resumes(tmp_path):
    """A Ray instance of the sweep's own on this machine: 2 CPUs, one per job (conf/hydra/launcher/ray.yaml)."""
    check_sweep_records_every_job_and_resumes("ray", tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_launcher_joins_an_existing_cluster_by_its_address(tmp_path):
    """hydra.launcher.ray.init.address: a Ray head that the test starts (`ray start --head`, 2 CPUs)."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    pytest.importorskip("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    ray_cli = str(ray_cli) if ray_cli.exists() else shutil.which("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "head").mkdir()  # the cluster's workers run where `ray start` ran, not in the sweep's folder
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--node-ip-address=127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **RAY_LOOPBACK}, cwd=tmp_path / "head")
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        out = clexp_cli(["-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
                         "experiment=smoke", "scenario.n_experiences=2", "model.hidden=[16]", "logger=none",
                         "plots=false", "seed=0,1", "hydra.sweep.dir=sweep"], tmp_path, timeout=400,
                        env={**RAY_LOOPBACK, "RAY_AUTH_MODE": "token"})  # the head's token (~/.ray/auth_token)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Connecting to existing Ray cluster" in out.stderr + out.stdout
        # hydra.sweep.dir=sweep is the launching folder's (clexp makes it absolute for a cluster's workers)
        assert [json.loads((tmp_path / "sweep" / str(j) / "results.json").read_text())["status"]
                for j in range(2)] == ["completed", "completed"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the head's processes on SIGTERM
        head.wait(timeout=60)
