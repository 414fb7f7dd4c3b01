"""clexp-report: statistics against numbers computed here, rows grouped by every differing override
but the seed, files written, failed and diverged jobs, figures per scenario, errors, and one small
real sweep."""

import csv
import json
import math
import statistics

import pytest

from clexp.review.records import diverged
from clexp.review.report import collect, main, summarize, varying_keys
from tests.conftest import clexp_cli

PNG = b"\x89PNG\r\n\x1a\n"
OPTIMIZERS = {"sgd": {"_target_": "torch.optim.SGD", "lr": 0.05}, "adam": {"_target_": "torch.optim.Adam", "lr": 0.001}}


def fake_run(folder, method, strength, seed, avg, forgetting=0.1, bwt=-0.1, overrides=None, optimizer="sgd",
             lr=None, incremental="task", dataset="digits", choices=None, key="lam"):
    """A completed job's folder: results.json (with its resolved config) and, given `overrides`,
    `.hydra/overrides.yaml` (and `.hydra/hydra.yaml` with the groups' options, given `choices`)."""
    folder.mkdir(parents=True)
    m = {"name": method, **({key: strength} if strength is not None else {})}
    opt = dict(OPTIMIZERS[optimizer], **({"lr": lr} if lr is not None else {}))
    cfg = {"dataset": {"name": dataset}, "scenario": {"name": "split", "incremental": incremental}, "method": m,
           "optimizer": opt, "train": {"epochs": 1}, "seed": seed}
    (folder / "results.json").write_text(json.dumps({
        "status": "completed", "config": cfg, "seed": seed, "acc_matrix": [[0.9, 0.1], [0.5, avg]],
        "metrics": {"avg_acc": avg, "forgetting": forgetting, "bwt": bwt, "fwt": None}}))
    if overrides is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if choices is not None:
        (folder / ".hydra" / "hydra.yaml").write_text(
            "hydra:\n  runtime:\n    choices:\n" + "".join(f"      {k}: {v}\n" for k, v in choices.items()))


def fake_failed(folder, error, overrides):
    (folder / ".hydra").mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"status": "failed", "error": error}))
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


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
    # n = 1: the mean alone; n = 3: ± std and the t interval mean ± t(0.975, 2)·s/√3 (t = 4.3027)
    half = 4.302652729911275 * 0.05 / 3 ** 0.5
    assert "| ewc | 10 | 1 | n/a | 90.0 |  |" in md and "Failed jobs (1)" in md
    assert f"| ewc | 1 | 3 | n/a | 75.0 ± 5.0 [{100 * (0.75 - half):.1f}, {100 * (0.75 + half):.1f}] |" in md
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


def csv_rows(path):
    return list(csv.DictReader(open(path)))


def test_configurations_that_differ_are_not_seeds(tmp_path, capsys):
    """`clexp -m method=ewc optimizer=sgd,adam seed=0`: two rows of n=1, a column `optimizer`."""
    for job, (opt, avg) in enumerate((("sgd", 0.137), ("adam", 0.377))):
        fake_run(tmp_path / str(job), "ewc", 100.0, 0, avg, optimizer=opt,
                 overrides=["method=ewc", f"optimizer={opt}", "seed=0", "train.epochs=1"])
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = csv_rows(tmp_path / "summary.csv")
    assert [(r["optimizer"], r["n"]) for r in rows] == [("adam", "1"), ("sgd", "1")]
    assert [float(r["avg_acc_mean"]) for r in rows] == [pytest.approx(0.377), pytest.approx(0.137)]
    assert list(rows[0])[:7] == ["dataset", "scenario", "incremental", "method", "strength", "optimizer", "n"]
    assert out.splitlines()[0].split()[5] == "optimizer" and "37.7" in out and "13.7" in out and "±" not in out
    md = (tmp_path / "summary.md").read_text()
    assert "| optimizer | n |" in md and "| ewc | 100 | adam | 1 | n/a | 37.7 |" in md and "× `optimizer`" in md


def test_jobs_that_differ_only_in_the_seed_are_one_row(tmp_path):
    for seed, avg in enumerate((0.5, 0.7)):
        fake_run(tmp_path / str(seed), "ewc", 100.0, seed, avg,
                 overrides=["method=ewc", "optimizer=sgd", f"seed={seed}", "train.epochs=1"])
    records = collect([tmp_path])
    assert varying_keys(records) == []
    (row,) = summarize(records)
    assert row["n"] == 2 and row["avg_acc_mean"] == pytest.approx(0.6)
    assert row["avg_acc_std"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert set(row) == {"dataset", "scenario", "incremental", "method", "strength", "n", "val_avg_acc_mean",
                        "interval", *(f"{s}_{x}" for s in ("avg_acc", "forgetting", "bwt")
                                      for x in ("mean", "std", "ci95_lo", "ci95_hi", "iqm"))}
    assert row["interval"] == "t" and row["avg_acc_iqm"] is None  # n = 2: the t interval, no IQM
    assert row["val_avg_acc_mean"] is None  # these runs have no validation split


def test_grouping_reads_the_resolved_config(tmp_path):
    """An override equal to the default (here `optimizer.lr=0.05`, or `5e-2`) is the same configuration as
    none; a config group left at its default is named by `.hydra/hydra.yaml`'s choices."""
    fake_run(tmp_path / "0", "si", 0.5, 0, 0.6, key="c", overrides=["method=si", "seed=0"],
             choices={"optimizer": "sgd"})
    fake_run(tmp_path / "1", "si", 0.5, 1, 0.8, key="c", overrides=["method=si", "optimizer.lr=5e-2", "seed=1"],
             choices={"optimizer": "sgd"})
    fake_run(tmp_path / "2", "si", 0.5, 0, 0.4, key="c", lr=0.01,
             overrides=["method=si", "optimizer.lr=0.01", "seed=0"], choices={"optimizer": "sgd"})
    fake_run(tmp_path / "3", "si", 0.5, 0, 0.3, key="c", optimizer="adam",
             overrides=["method=si", "optimizer=adam", "seed=0"], choices={"optimizer": "adam"})
    records = collect([tmp_path])
    assert varying_keys(records) == ["optimizer.lr", "optimizer"]
    rows = {(r["optimizer"], r["optimizer.lr"]): (r["n"], r["avg_acc_mean"]) for r in summarize(records)}
    assert rows == {("sgd", 0.05): (2, pytest.approx(0.7)), ("sgd", 0.01): (1, pytest.approx(0.4)),
                    ("adam", 0.001): (1, pytest.approx(0.3))}


def test_diverged_strengths_are_kept_and_marked(tmp_path):
    """Failed during training at a strength (overrides name it) or non-finite: diverged; refused by
    validation: only listed with the failed jobs."""
    fake_run(tmp_path / "0", "ewc", 1.0, 0, 0.7, overrides=["method=ewc", "method.lam=1"])
    fake_run(tmp_path / "1", "ewc", 1e4, 0, math.nan, overrides=["method=ewc", "method.lam=1e4"])
    fake_failed(tmp_path / "2", "non-finite value: experience 1, step 7: the loss became nan",
                ["method=ewc", "method.lam=1e7"])
    fake_failed(tmp_path / "3", "ConfigError: method.lam=-1 ...", ["method=ewc", "method.lam=-1"])
    records = collect([tmp_path])
    assert sorted(r["strength"] for r in diverged(records)) == [1e4, 1e7]
    assert main([str(tmp_path)]) == 0
    rows = csv_rows(tmp_path / "summary.csv")
    assert [(float(r["strength"]), r["avg_acc_mean"]) for r in rows] == [(1.0, "0.7"), (1e4, "")]
    assert "Failed jobs (2)" in (tmp_path / "summary.md").read_text()


def test_one_matrix_figure_per_scenario(tmp_path):
    for job, incremental in enumerate(("task", "domain")):
        fake_run(tmp_path / str(job), "ewc", 10.0, 0, 0.5, incremental=incremental,
                 overrides=["method=ewc", f"scenario.incremental={incremental}"])
    assert main([str(tmp_path)]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["acc_matrices_digits-split-domain.png", "acc_matrices_digits-split-task.png",
                    "acc_vs_strength.png", "profiles.png"]  # two scenarios: the performance profiles too
    for png in pngs:
        assert (tmp_path / png).read_bytes().startswith(PNG)


def test_a_damaged_results_file_is_one_line(tmp_path, capsys):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "results.json").write_text("{not json")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clexp-report: error:") and len(err.strip().splitlines()) == 1


def test_strength_figure_draws_the_validation_curve_selection_reads(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from clexp.review import report
    vals = {1.0: [0.6, 0.7], 10.0: [0.8, 0.9]}
    for job, (lam, seed) in enumerate((lam, s) for lam in vals for s in (0, 1)):
        folder = tmp_path / str(job)
        fake_run(folder, "ewc", lam, seed, 0.5, overrides=["method=ewc", f"method.lam={lam}", f"seed={seed}"])
        data = json.loads((folder / "results.json").read_text())
        data["val_metrics"] = {"avg_acc": vals[lam][seed]}
        (folder / "results.json").write_text(json.dumps(data))
    records = collect([tmp_path])
    rows = {r["strength"]: r for r in summarize(records)}
    assert rows[1.0]["val_avg_acc_mean"] == pytest.approx(0.65)
    assert rows[10.0]["val_avg_acc_mean"] == pytest.approx(0.85)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at its lines
    report.plot_strength(records, tmp_path / "s.png")
    dashed = [ln for ln in figures[0].axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == pytest.approx([65.0, 85.0])
    assert "validation" in dashed[0].get_label()
