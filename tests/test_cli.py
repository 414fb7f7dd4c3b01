"""The `clexp` command as a user runs it: help, printing the config, multirun, wandb offline, errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clexp_cli

QUICK = ["train.epochs=1", "model.hidden=[32]", "trainer.enable_progress_bar=false"]


def test_help_lists_config_groups(tmp_path):
    out = clexp_cli(["--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    for group in ("dataset", "scenario", "model", "method", "optimizer", "trainer", "logger", "experiment"):
        assert f"{group}:" in out.stdout
    assert "naive, " in out.stdout or "joint, naive" in out.stdout


def test_cfg_job_prints_composed_config(tmp_path):
    out = clexp_cli(["--cfg", "job", "method=joint", "model.hidden=[400,400]"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "joint: true" in out.stdout and "- 400" in out.stdout


def test_single_run_prints_table_and_writes_results(tmp_path):
    out = clexp_cli([*QUICK, "logger=csv", "hydra.run.dir=run"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "average accuracy" in out.stdout and "Results:" in out.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(results["acc_matrix"]) == 5
    assert (tmp_path / "run" / "csv" / "metrics.csv").exists()


def test_two_job_multirun_gives_two_results(tmp_path):
    out = clexp_cli(["-m", *QUICK, "logger=none", "method=naive,joint", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    files = sorted((tmp_path / "sweep").glob("*/results.json"))
    assert len(files) == 2
    methods = {json.loads(f.read_text())["config"]["method"]["name"] for f in files}
    assert methods == {"naive", "joint"}


def test_bad_value_fails_with_one_line_naming_the_key(tmp_path):
    out = clexp_cli([*QUICK, "logger=none", "optimizer.lr=-1", "hydra.run.dir=run"], tmp_path)
    assert out.returncode == 2
    assert "optimizer.lr" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_offline_wandb_run_holds_the_logged_metrics(tmp_path):
    out = clexp_cli([*QUICK, "logger=wandb", "hydra.run.dir=run"], tmp_path, env={"WANDB_API_KEY": ""})
    assert out.returncode == 0, out.stderr
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    wandb_cli = Path(sys.executable).with_name("wandb")
    wandb_cli = str(wandb_cli) if wandb_cli.exists() else shutil.which("wandb")
    inspect = subprocess.run([wandb_cli, "leet", "inspect", "--summary", "--json", str(runs[0])],
                             capture_output=True, text=True, timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    summary = json.loads(inspect.stdout)["summary"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["eval/avg_acc"] == pytest.approx(results["metrics"]["avg_acc"])
    assert {f"eval/acc_exp{j}" for j in range(5)} <= set(summary)
    assert "train/loss" in summary and summary["experience"] == 4
    # the accuracy matrix as a wandb.Table (init row + one per experience), saved with the run
    table = summary["eval/acc_matrix"]
    assert table["_type"] == "table-file" and table["nrows"] == 6 and table["ncols"] == 6
    files = list(runs[0].rglob("eval/acc_matrix*.table.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["columns"] == ["after", *[f"exp{j}" for j in range(5)]]
    assert saved["data"][0][0] == "init" and saved["data"][-1][1:] == pytest.approx(
        [100 * a for a in results["acc_matrix"][-1]])
