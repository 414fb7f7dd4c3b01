"""The sweep-summary wandb run: one run per sweep folder however often the sweep ends (a resumed sweep
resumes it), silent on the console, holding the report's tables with intervals and the selected rows'
numbers (offline wandb, read back with `wandb leet inspect`)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from clexp.launch.sweep import job_rows
from clexp.review.summary_run import run_id, summary_run
from tests.test_selection import fake_sweep


def inspect(run_folder: Path) -> dict:
    cli = Path(sys.executable).with_name("wandb")
    cli = str(cli) if cli.exists() else shutil.which("wandb")
    out = subprocess.run([cli, "leet", "inspect", "--summary", "--json", str(run_folder)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_one_silent_summary_run_per_sweep_with_the_statistics(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # silent by its own settings, not the environment
    fake_sweep(tmp_path)  # ewc at three strengths and naive, two seeds each, with validation splits
    config = OmegaConf.create({"logger": {"_target_": "clexp.core.loggers.WandbLogging", "mode": "offline",
                                          "project": "clexp-test"}, "group": "g"})
    for _ in range(2):  # the sweep ends twice (re-run with sweep resume): still one run
        summary_run(config, tmp_path, job_rows(tmp_path))
    out, err = capfd.readouterr()
    assert "wandb:" not in out + err, out + err  # no banner
    assert out.count("Sweep summary run: g-summary") == 2
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(run_id(tmp_path))
    data = inspect(runs[0])
    summary = data["summary"]
    assert summary["sweep/jobs"]["nrows"] == 8 and summary["sweep/summary"]["nrows"] == 4
    # paired: ewc vs naive, for accuracy and forgetting (naive vs the best, ewc, is the same pair mirrored)
    assert summary["sweep/selected"]["nrows"] == 2 and summary["sweep/paired"]["nrows"] == 2
    base = "selected/digits-split-task/ewc"
    assert summary[f"{base}/strength"] == 10.0  # selected on validation (test would pick 1000)
    lo, mean, hi = (summary[f"{base}/test_avg_acc{s}"] for s in ("_ci95_lo", "", "_ci95_hi"))
    assert lo < mean < hi and abs(mean - 0.62) < 1e-9
