"""Behaviour on Split Digits: EWC, SI and MAS at their default strengths forget less than fine-tuning
in task- and domain-IL, and a huge λ freezes what the first experience learnt."""

import statistics

import pytest

from bench.select_defaults import SETUP
from tests.conftest import run_stream

# where the defaults were chosen (bench/select_defaults.py): lr 0.2 and 10 epochs, in which fine-tuning
# forgets in task-IL too (conf/config.yaml's lr 0.05 for 5 epochs forgets nothing there)
QUIET = ["plots=false", "logger=none", "trainer.enable_progress_bar=false"]
SCENARIOS = ("task", "domain")
SEEDS = (0, 1, 2)


def mean_metrics(folder, method) -> dict:
    """{scenario: (mean avg accuracy, mean forgetting)} over SEEDS, the method at its default strength."""
    out = {}
    for inc in SCENARIOS:
        runs = [run_stream(folder / f"{method}-{inc}{seed}",
                           [*SETUP, *QUIET, f"scenario.incremental={inc}", f"method={method}", f"seed={seed}"],
                           fast=False)["metrics"] for seed in SEEDS]
        out[inc] = (statistics.mean(r["avg_acc"] for r in runs), statistics.mean(r["forgetting"] for r in runs))
    return out


@pytest.fixture(scope="module")
def naive(tmp_path_factory):
    return mean_metrics(tmp_path_factory.mktemp("naive"), "naive")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ewc", "si", "mas"])
def test_method_forgets_less_than_fine_tuning_with_its_default_strength(tmp_path, naive, method):
    ours = mean_metrics(tmp_path, method)
    for inc in SCENARIOS:
        assert naive[inc][1] > 0.05, (inc, naive)  # the setting does forget
        assert ours[inc][1] < naive[inc][1], (method, inc, ours, naive)  # less forgetting in each scenario
    gain = statistics.mean(ours[inc][0] - naive[inc][0] for inc in SCENARIOS)
    assert gain > 0.005, (method, ours, naive)  # and a better average accuracy


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
