"""Behaviour on Split Digits task-IL: EWC and SI (default strengths) forget less than fine-tuning,
and a huge λ freezes what the first experience learnt."""

import statistics

import pytest

from tests.conftest import run_stream

# a setting where fine-tuning forgets: a large step size, long training, a narrow shared MLP
HARD = ["scenario.incremental=task", "optimizer.lr=0.5", "train.epochs=10", "model.hidden=[100]", "plots=false"]
SEEDS = (0, 1, 2)


def final_accuracy(tmp_path, method, extra=()):
    return statistics.mean(
        run_stream(tmp_path / f"{method}{seed}", [*HARD, f"method={method}", f"seed={seed}", *extra],
                   fast=False)["metrics"]["avg_acc"]
        for seed in SEEDS
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ewc", "si"])
def test_method_beats_fine_tuning_with_its_default_strength(tmp_path, method):
    naive = final_accuracy(tmp_path, "naive", ["logger=none", "trainer.enable_progress_bar=false"])
    ours = final_accuracy(tmp_path, method, ["logger=none", "trainer.enable_progress_bar=false"])
    assert ours > naive + 0.01, (method, ours, naive)


@pytest.mark.slow
def test_huge_lambda_freezes_the_first_experience(tmp_path):
    # domain-IL shares every output, so fine-tuning overwrites experience 0; Adam bounds each step by
    # its learning rate, so a huge λ pins the parameters instead of diverging
    base = ["scenario.incremental=domain", "optimizer=adam", "optimizer.lr=1e-3", "plots=false"]
    naive = run_stream(tmp_path / "naive", [*base, "method=naive"])["acc_matrix"]
    frozen = run_stream(tmp_path / "ewc", [*base, "method=ewc", "method.lam=1e7"])["acc_matrix"]
    assert min(row[0] for row in naive) < naive[0][0] - 0.3  # the setting does forget
    assert frozen[0][0] > 0.9
    assert all(row[0] > frozen[0][0] - 0.08 for row in frozen)  # experience 0 stays where it was
