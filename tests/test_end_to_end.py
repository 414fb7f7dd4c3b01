"""Whole streams in-process on the offline digits data: shapes, ranges, methods, reproducibility."""

import json

import pytest

from tests.conftest import run_stream


def check_matrix(results, T=5):
    R = results["acc_matrix"]
    assert len(R) == T and all(len(r) == T for r in R)
    assert all(0.0 <= a <= 1.0 for r in R for a in r)
    assert set(results["metrics"]) == {"avg_acc", "forgetting", "bwt", "fwt"}
    assert len(results["timings"]["train_s"]) == T and results["timings"]["total_s"] > 0


@pytest.mark.parametrize("incremental", ["class", "domain", "task"])
def test_each_incremental_setting_runs(tmp_path, incremental):
    results = run_stream(tmp_path, [f"scenario.incremental={incremental}", "optimizer=sgd"])  # 2 epochs: SGD's lr 0.05
    check_matrix(results)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["acc_matrix"] == results["acc_matrix"]
    assert {"config", "acc_matrix", "metrics", "timings", "versions", "seed"} <= set(saved)
    assert {"python", "torch", "lightning", "hydra"} <= set(saved["versions"])
    # each experience was learnt when it was trained
    assert all(results["acc_matrix"][i][i] > 0.8 for i in range(5))


def test_task_il_multihead_runs_and_beats_chance(tmp_path):
    results = run_stream(tmp_path, ["scenario.incremental=task", "model.multihead=true"])
    check_matrix(results)
    assert results["metrics"]["avg_acc"] > 0.6  # two classes per task: chance is 0.5


def test_joint_beats_naive_on_class_il(tmp_path):
    naive = run_stream(tmp_path / "naive", ["method=naive", "optimizer=sgd"])  # the fast runs' 2 epochs: SGD
    joint = run_stream(tmp_path / "joint", ["method=joint", "optimizer=sgd"])
    check_matrix(joint)
    assert joint["metrics"]["avg_acc"] > naive["metrics"]["avg_acc"] + 0.3
    assert naive["metrics"]["forgetting"] > 0.5  # catastrophic forgetting, the problem itself


def test_same_seed_same_results(tmp_path):
    a = run_stream(tmp_path / "a", ["seed=3"])
    b = run_stream(tmp_path / "b", ["seed=3"])
    c = run_stream(tmp_path / "c", ["seed=4"])
    assert a["acc_matrix"] == b["acc_matrix"] and a["metrics"] == b["metrics"]
    assert a["acc_matrix"] != c["acc_matrix"]


@pytest.mark.parametrize("scenario", ["permuted", "rotated"])
def test_permuted_and_rotated_streams_run(tmp_path, scenario):
    results = run_stream(tmp_path, [f"scenario={scenario}", "scenario.n_experiences=3", "train.epochs=1"])
    check_matrix(results, T=3)


def test_iterations_instead_of_epochs(tmp_path):
    results = run_stream(tmp_path, ["train.epochs=null", "train.iterations=7", "scenario.n_experiences=2"])
    check_matrix(results, T=2)


def test_stream_checkpoint_is_written_and_loads_safely(tmp_path):
    from clexp.core import checkpoint
    run_stream(tmp_path, ["scenario.n_experiences=2", "train.epochs=1"])
    state = checkpoint.load(checkpoint.last_checkpoint(tmp_path))
    assert state["experience"] == 1 and len(state["accuracy"]["rows"]) == 2


def test_importance_histograms_saved_per_experience_and_drawn_once_at_the_end(tmp_path):
    results = run_stream(tmp_path, ["method=si", "train.epochs=1"])
    check_matrix(results)
    hists = [json.loads((tmp_path / "importance" / f"exp{i}.json").read_text()) for i in range(5)]
    n_params = sum(h["total"] for h in hists[:1])
    assert all(h["total"] == n_params and sum(h["counts"]) + h["zeros"] == h["total"] for h in hists)
    assert (tmp_path / "importance.png").read_bytes().startswith(b"\x89PNG")
    assert not list((tmp_path / "importance").glob("*.png"))  # no figure per experience
