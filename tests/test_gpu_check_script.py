"""`bench/gpu_check.sh --device cpu --tiny`: the GPU session's one command works end to end on the CPU
(the steps run, pass and are listed in summary.md). The steps whose work other tests already do on the
CPU are left out here to keep the suite short: `test-fast` (tests/test_compose.py), `bench`
(tests/test_bench.py runs every benchmark in tiny mode) and `ddp` (two CPU processes; tests/test_ddp.py
runs the same DDP sweeps, and on 2 busy cores the step outran its 150 s cap); `--only` itself is what
this test exercises."""

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT

STEPS = ["gpu-tests", "run", "precision"]


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu-check"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    env.pop("PYTEST_XDIST_WORKER", None)
    command = ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--tiny", "--out", str(out),
               "--only", ",".join(STEPS)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    summary = (out / "summary.md").read_text() if (out / "summary.md").exists() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in summary.splitlines()
            if line.startswith("| ") and not line.startswith("| step")}
    assert list(rows) == STEPS and set(rows.values()) == {"0"}, summary
    assert all((out / f"{s}.log").is_file() for s in STEPS)
    assert not (out / "bench.log").exists() and not (out / "test-fast.log").exists()  # --only: left out
    precision = json.loads((out / "precision" / "precision.json").read_text())
    assert {(r["method"], r["precision"]) for r in precision} >= {("ewc", "bf16-mixed"), ("si", "bf16-mixed")}
    assert (out / "run" / "results.json").is_file()
    assert not list(out.rglob("*.pt"))  # stream checkpoints removed: the folder is small enough to commit
