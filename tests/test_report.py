"""clexp-report: statistics against numbers computed here, files written, failed jobs listed, errors,
and one small real sweep."""

import csv
import json
import statistics

import pytest

from clexp.report import collect, main, summarize
from tests.conftest import clexp_cli

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(folder, method, strength, seed, avg, forgetting=0.1, bwt=-0.1):
    folder.mkdir(parents=True)
    m = {"name": method, **({"lam": strength} if strength is not None else {})}
    cfg = {"dataset": {"name": "digits"}, "scenario": {"name": "split", "incremental": "task"}, "method": m,
           "seed": seed}
    (folder / "results.json").write_text(json.dumps({
        "status": "completed", "config": cfg, "seed": seed, "acc_matrix": [[0.9, 0.1], [0.5, avg]],
        "metrics": {"avg_acc": avg, "forgetting": forgetting, "bwt": bwt, "fwt": None}}))


def fake_sweep(root):
    accs = {("naive", None): [0.5, 0.6], ("ewc", 1.0): [0.7, 0.8, 0.75], ("ewc", 10.0): [0.9]}
    job = 0
    for (method, strength), values in accs.items():
        for seed, avg in enumerate(values):
            fake_run(root / str(job), method, strength, seed, avg)
            job += 1
    failed = root / str(job)
    (failed / ".hydra").mkdir(parents=True)
    (failed / "results.json").write_text(json.dumps({"status": "failed", "error": "ConfigError: method.lam=-1 ..."}))
    (failed / ".hydra" / "overrides.yaml").write_text("- method=ewc\n- method.lam=-1\n")
    return accs


def test_mean_and_std_over_seeds(tmp_path):
    accs = fake_sweep(tmp_path)
    rows = {(r["method"], r["strength"]): r for r in summarize(collect([tmp_path]))}
    for key, values in accs.items():
        assert rows[key]["n"] == len(values)
        assert rows[key]["avg_acc_mean"] == pytest.approx(statistics.fmean(values))
        expected_std = statistics.stdev(values) if len(values) > 1 else None
        assert rows[key]["avg_acc_std"] == (pytest.approx(expected_std) if expected_std else None)


def test_files_and_failed_jobs(tmp_path, capsys):
    fake_sweep(tmp_path)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "FAILED" in out and "method.lam=-1" in out
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert len(rows) == 3 and {"avg_acc_mean", "avg_acc_std", "forgetting_mean", "bwt_mean", "n"} <= set(rows[0])
    md = (tmp_path / "summary.md").read_text()
    assert "| ewc | 10 | 1 | 90.0 |" in md and "| ewc | 1 | 3 | 75.0 ± 5.0 |" in md and "Failed jobs (1)" in md
    for png in ("acc_vs_strength.png", "acc_matrices.png"):
        data = (tmp_path / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000


def test_several_folders_at_once(tmp_path):
    fake_run(tmp_path / "a" / "0", "si", 0.5, 0, 0.6)
    fake_run(tmp_path / "b" / "0", "si", 0.5, 1, 0.8)
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert len(rows) == 1 and rows[0]["n"] == "2" and float(rows[0]["avg_acc_mean"]) == pytest.approx(0.7)


def test_empty_or_missing_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert "clexp-report: error" in capsys.readouterr().err


@pytest.mark.slow
def test_report_of_a_small_real_sweep(tmp_path):
    out = clexp_cli(["-m", "experiment=smoke", "logger=none", "scenario.n_experiences=2", "method=l2",
                     "method.lam=0.01,1", "seed=0,1", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert main([str(tmp_path / "sweep")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "summary.csv")))
    assert sorted(float(r["strength"]) for r in rows) == [0.01, 1.0] and all(r["n"] == "2" for r in rows)
    results = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/results.json")]
    lam1 = [r["metrics"]["avg_acc"] for r in results if r["config"]["method"]["lam"] == 1.0]
    row = next(r for r in rows if float(r["strength"]) == 1.0)
    assert float(row["avg_acc_mean"]) == pytest.approx(statistics.fmean(lam1))
