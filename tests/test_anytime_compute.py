"""Anytime evaluation (off by default; at each boundary the curve equals the matrix row on the same
inputs), the task-aware matrix of class-IL runs, and the compute accounting per experience."""

import math

import pytest

from tests.conftest import run_stream

TINY = ["scenario.n_experiences=2", "train.epochs=1", "model.hidden=[64]"]


@pytest.fixture(scope="module")
def ewc_anytime(tmp_path_factory):
    folder = tmp_path_factory.mktemp("anytime")
    # λ 30: a weak EWC, so that class-IL still forgets experience 0's outputs;
    # 512 samples: more than any validation split here, so the subset is the whole split
    return folder, run_stream(folder, [*TINY, "method=ewc", "method.lam=30", "eval.every_n_steps=4",
                                       "eval.anytime_samples=512"])


def test_anytime_is_off_by_default_and_costs_nothing(tmp_path):
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate
    from tests.conftest import FAST, compose

    cfg = compose([*FAST, *TINY])
    runner = StreamRunner(cfg, tmp_path, parts=validate(cfg))
    assert runner.anytime is None and not any(type(c).__name__ == "AnytimeEvaluation" for c in runner.callbacks)
    results = runner.run()
    assert results["anytime"] is None and not (tmp_path / "anytime.png").exists()


def test_anytime_curve_at_each_boundary_equals_the_matrix_row(ewc_anytime):
    folder, results = ewc_anytime
    a = results["anytime"]
    assert a["set"] == "val" and a["every_n_steps"] == 4
    steps = results["compute"]["optimizer_steps"]
    assert a["boundaries"] == [steps[0], steps[0] + steps[1]]
    inside = [s for s, e in zip(a["steps"], a["experience"]) if s not in a["boundaries"]]
    assert inside and all((s - (0 if s <= steps[0] else steps[0])) % 4 == 0 for s in inside)
    for i, b in enumerate(a["boundaries"]):
        at = a["acc"][a["steps"].index(b)]
        assert at == results["val_acc_matrix"][i][: i + 1]  # the same inputs, the same model: equal
    assert (folder / "anytime.png").read_bytes().startswith(b"\x89PNG")


def test_anytime_without_validation_uses_the_test_sets(tmp_path):
    results = run_stream(tmp_path, [*TINY, "train.val_fraction=0", "eval.every_n_steps=10",
                                    "eval.anytime_samples=100000", "plots=false"])
    a = results["anytime"]
    assert a["set"] == "test"
    for i, b in enumerate(a["boundaries"]):
        assert a["acc"][a["steps"].index(b)] == results["acc_matrix"][i][: i + 1]


def test_class_il_records_the_task_aware_matrix(ewc_anytime):
    _, results = ewc_anytime
    R, M = results["acc_matrix"], results["task_aware_acc_matrix"]
    assert len(M) == len(R) == 2
    # masking to the experience's own classes keeps every right answer: never below task-agnostic
    assert all(m >= r for mr, rr in zip(M, R) for m, r in zip(mr, rr))
    assert M[1][0] > R[1][0]  # naive-ish class-IL forgets experience 0's outputs; masked, they come back


def test_task_il_has_no_task_aware_matrix(tmp_path):
    results = run_stream(tmp_path, [*TINY, "scenario.incremental=task", "plots=false"])
    assert results["task_aware_acc_matrix"] is None


def test_compute_accounting_per_experience(ewc_anytime, tmp_path):
    _, results = ewc_anytime
    c = results["compute"]
    # one epoch over each experience's training part (five classes, about 718 images less 10 % held out)
    assert all(600 < n < 700 for n in c["training_samples"])
    assert c["optimizer_steps"] == [math.ceil(n / 32) for n in c["training_samples"]]
    assert c["forward_flops_per_sample"] == 2 * (64 * 64 + 64 * 10)  # the MLP 64-64-10's two matmuls
    assert all(s > 0 for s in c["importance_s"]) and all(s > 0 for s in c["training_s"])
    naive = run_stream(tmp_path, [*TINY, "plots=false"])["compute"]
    assert naive["importance_s"] == [0.0, 0.0]
