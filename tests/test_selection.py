"""Honest selection: the report selects each group's strength on validation accuracy, never on test
(on test only when the runs have no validation split, and then labelled so); sweepers optimise the
validation accuracy; the first-k protocol end to end."""

import csv
import json

import pytest

from clexp.review.report import collect, main
from clexp.review.selection import COLUMNS, WARNING, emit_overrides, objective_value, select
from tests.conftest import clexp_cli

# val and test rankings disagree: on validation λ=10 wins, on test λ=1000 wins
VAL = {1.0: (0.60, 0.62), 10.0: (0.80, 0.78), 1000.0: (0.70, 0.72)}
TEST = {1.0: (0.50, 0.52), 10.0: (0.60, 0.64), 1000.0: (0.90, 0.88)}


def fake_job(folder, method, strength, seed, test, val, incremental="task", key="lam", extra_overrides=()):
    folder.mkdir(parents=True)
    m = {"name": method, **({key: strength} if strength is not None else {})}
    cfg = {"dataset": {"name": "digits"}, "scenario": {"name": "split", "incremental": incremental,
                                                        "use_first": 2},
           "method": m, "train": {"val_fraction": 0.1 if val is not None else 0}, "seed": seed}
    (folder / "results.json").write_text(json.dumps({
        "status": "completed", "config": cfg, "seed": seed, "acc_matrix": [[0.9, 0.1], [0.5, test]],
        "metrics": {"avg_acc": test, "forgetting": 0.2, "bwt": -0.2, "fwt": None},
        "val_metrics": None if val is None else {"avg_acc": val, "forgetting": 0.1, "bwt": -0.1, "fwt": None}}))
    overrides = [f"method={method}", f"scenario.incremental={incremental}", "scenario.use_first=2",
                 *extra_overrides, *([f"method.{key}={strength:g}"] if strength is not None else []), f"seed={seed}"]
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def fake_sweep(root, with_val=True):
    job = 0
    for strength in VAL:
        for seed in (0, 1):
            fake_job(root / str(job), "ewc", strength, seed, TEST[strength][seed],
                     VAL[strength][seed] if with_val else None)
            job += 1
    for seed in (0, 1):  # a method without strength: its own group, one row
        fake_job(root / str(job), "naive", None, seed, 0.4, 0.45 if with_val else None)
        job += 1


def test_selection_reads_validation_never_test(tmp_path):
    fake_sweep(tmp_path)
    rows = {r["method"]: r for r in select(collect([tmp_path]))}
    ewc = rows["ewc"]
    assert ewc["strength"] == 10.0 and ewc["selected_on"] == "val"  # test would pick 1000
    assert ewc["val_avg_acc"] == pytest.approx(0.79)
    assert ewc["test_avg_acc_mean"] == pytest.approx(0.62)
    assert ewc["test_avg_acc_std"] == pytest.approx(0.0283, abs=1e-4)
    assert ewc["n_seeds"] == 2 and ewc["strength_key"] == "method.lam"
    assert rows["naive"]["strength"] is None and rows["naive"]["strength_key"] == ""


def test_without_validation_selects_on_test_and_says_so(tmp_path, capsys):
    fake_sweep(tmp_path, with_val=False)
    assert main([str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert WARNING in out and "TEST" in out
    rows = list(csv.DictReader(open(tmp_path / "selected.csv")))
    ewc = next(r for r in rows if r["method"] == "ewc")
    assert float(ewc["strength"]) == 1000.0 and ewc["selected_on"] == "test" and ewc["val_avg_acc"] == ""
    assert "WARNING" in (tmp_path / "selected.md").read_text()


def test_selected_csv_and_md_are_written_with_the_columns(tmp_path, capsys):
    fake_sweep(tmp_path)
    assert main([str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "Selected strengths" in out and WARNING not in out
    with open(tmp_path / "selected.csv") as f:
        header = next(csv.reader(f))
    assert tuple(header) == COLUMNS
    rows = list(csv.DictReader(open(tmp_path / "selected.csv")))
    ewc = next(r for r in rows if r["method"] == "ewc")
    assert (ewc["strength_key"], float(ewc["strength"]), ewc["n_seeds"]) == ("method.lam", 10.0, "2")
    assert ewc["selected_on"] == "val"
    assert float(ewc["test_avg_acc_mean"]) == pytest.approx(0.62)
    md = (tmp_path / "selected.md").read_text()
    assert "| ewc | split | task | lam=10 | 2 | 79.0 | 62.0 ± 2.8 [" in md
    assert (tmp_path / "summary.csv").exists()  # the full grid stays


def test_a_strength_with_a_diverged_run_is_never_selected(tmp_path):
    fake_sweep(tmp_path)
    failed = tmp_path / "99"
    (failed / ".hydra").mkdir(parents=True)
    (failed / "results.json").write_text(json.dumps({"status": "failed", "error": "non-finite value: loss"}))
    (failed / ".hydra" / "overrides.yaml").write_text(
        "- method=ewc\n- scenario.incremental=task\n- scenario.use_first=2\n- method.lam=10\n- seed=2\n")
    ewc = next(r for r in select(collect([tmp_path])) if r["method"] == "ewc")
    assert ewc["strength"] == 1000.0  # λ=10 diverged once: next best on validation


def test_other_swept_keys_make_groups_of_their_own(tmp_path):
    for i, (opt, strength, val) in enumerate([("sgd", 1.0, 0.9), ("sgd", 10.0, 0.5), ("adam", 1.0, 0.5),
                                              ("adam", 10.0, 0.9)]):
        fake_job(tmp_path / str(i), "ewc", strength, 0, 0.5, val, extra_overrides=[f"optimizer={opt}"])
    rows = select(collect([tmp_path]))
    assert {(r["extras"]["optimizer"], r["strength"]) for r in rows} == {("sgd", 1.0), ("adam", 10.0)}
    main([str(tmp_path), "--no-plots"])
    header = next(csv.reader(open(tmp_path / "selected.csv")))
    assert tuple(header[: len(COLUMNS)]) == COLUMNS and header[len(COLUMNS):] == ["optimizer"]


def test_emit_overrides_runs_the_selection_on_the_whole_stream(tmp_path, capsys):
    fake_sweep(tmp_path)
    commands = emit_overrides(select(collect([tmp_path])), seeds="0,1,2")
    assert "clexp -m method=ewc scenario.incremental=task method.lam=10 seed=0,1,2" in commands
    assert all("use_first" not in c for c in commands)
    assert main([str(tmp_path), "--no-plots", "--emit-overrides", "--seeds", "5,6"]) == 0
    assert "method.lam=10 seed=5,6" in capsys.readouterr().out


def test_emit_overrides_leaves_the_search_out(tmp_path):
    """An Optuna trial's overrides name the preset and the sampled strength: the command fixes the strength."""
    fake_job(tmp_path / "0", "ewc", 3.5, 0, 0.6, 0.7,
             extra_overrides=["experiment=optuna_lam", "hydra.sweeper.n_trials=5", "optimizer=adam"])
    [command] = emit_overrides(select(collect([tmp_path])), seeds="0,1")
    assert command == ("clexp -m method=ewc scenario.incremental=task optimizer=adam method.lam=3.5 seed=0,1")


def test_the_objective_is_validation_unless_test_is_asked():
    results = {"metrics": {"avg_acc": 0.5}, "val_metrics": {"avg_acc": 0.7}}
    assert objective_value({"objective": "val"}, results) == 0.7
    assert objective_value({"objective": "test"}, results) == 0.5
    assert objective_value({"objective": "val"}, {"metrics": {"avg_acc": 0.5}, "val_metrics": None}) == 0.5


def test_optuna_without_validation_split_is_refused(tmp_path, clexp_main):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = ["-m", "experiment=optuna_lam", "method=l2", "logger=none", "train.val_fraction=0",
            "hydra.sweeper.n_trials=1", "hydra.sweep.dir=sweep"]
    out = clexp_main(args, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and "objective" in lines[0] and "objective=test" in lines[0]
    assert not list((tmp_path / "sweep").glob("*/results.json"))  # refused before any job


@pytest.mark.slow
def test_first_k_then_the_whole_stream(tmp_path):
    """Tune λ on the first 2 of 3 experiences with validation, then run the printed command."""
    tiny = ["experiment=smoke", "logger=none", "plots=false", "scenario.n_experiences=5", "train.epochs=1",
            "model.hidden=[16]"]
    out = clexp_cli(["-m", *tiny, "scenario.use_first=2", "method=l2", "method.lam=0.01,1", "seed=0",
                     "hydra.sweep.dir=tune"], tmp_path)
    assert out.returncode == 0, out.stderr
    tuned = [json.loads(p.read_text()) for p in (tmp_path / "tune").glob("*/results.json")]
    assert len(tuned) == 2 and all(len(r["acc_matrix"]) == 2 and len(r["val_acc_matrix"]) == 2 for r in tuned)
    report = clexp_cli_report(tmp_path, ["tune", "--no-plots", "--emit-overrides", "--seeds", "0,1"])
    command = next(line for line in report.splitlines() if line.startswith("clexp -m "))
    best = max(tuned, key=lambda r: r["val_metrics"]["avg_acc"])["config"]["method"]["lam"]
    assert f"method.lam={best:g}" in command and "use_first" not in command and "seed=0,1" in command
    import shlex

    final = clexp_cli([*shlex.split(command)[1:], "hydra.sweep.dir=final"], tmp_path)
    assert final.returncode == 0, final.stderr
    runs = [json.loads(p.read_text()) for p in (tmp_path / "final").glob("*/results.json")]
    assert len(runs) == 2 and all(len(r["acc_matrix"]) == 5 for r in runs)
    assert {r["config"]["method"]["lam"] for r in runs} == {best}


def clexp_cli_report(cwd, args):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "clexp.review.report", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout
