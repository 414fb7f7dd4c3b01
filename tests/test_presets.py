"""Each published preset composes, sets the paper's strength for the chosen method and scenario, and
runs a one-step smoke stream on tiny files in the real formats."""

import pytest

from clexp.config.presets import apply_preset
from tests.conftest import compose, run_stream
from tests.test_data_sources import no_md5, tiny_cifar, tiny_mnist  # noqa: F401 (fixture)

MNIST_PRESETS = ["hsu2018_split_mnist", "vandeven2019_split_mnist", "vandeven2019_permuted_mnist",
                 "zenke2017_permuted_mnist"]


@pytest.mark.parametrize("preset,method,incremental,expected", [
    ("hsu2018_split_mnist", "ewc", "class", {"lam": 600}),
    ("hsu2018_split_mnist", "si", "domain", {"c": 3000}),
    ("hsu2018_split_mnist", "mas", "domain", {"lam": 10000}),
    ("vandeven2019_split_mnist", "online_ewc", "domain", {"lam": 1e8, "gamma": 0.7}),
    ("vandeven2019_permuted_mnist", "online_ewc", "class", {"lam": 5, "gamma": 1.0}),
    ("zenke2017_permuted_mnist", "si", "domain", {"c": 0.1, "xi": 0.1}),
])
def test_preset_sets_the_papers_strength(preset, method, incremental, expected):
    overrides = [f"experiment={preset}", f"method={method}", f"scenario.incremental={incremental}"]
    cfg = compose(overrides)
    apply_preset(cfg, overrides)
    for key, value in expected.items():
        assert cfg.method[key] == value


def test_command_line_strength_wins_over_the_preset():
    overrides = ["experiment=hsu2018_split_mnist", "method=ewc", "method.lam=7"]
    cfg = compose(overrides)
    assert apply_preset(cfg, overrides) == []
    assert cfg.method.lam == 7


@pytest.mark.parametrize("preset", MNIST_PRESETS)
def test_mnist_preset_runs_a_smoke_step(tmp_path, preset):
    tiny_mnist(tmp_path / "data")
    cfg = compose([f"experiment={preset}"])
    assert cfg.dataset.name == "mnist" and cfg.preset.name == preset
    results = run_stream(tmp_path / "run", [f"experiment={preset}", "method=ewc", f"paths.data_dir={tmp_path / 'data'}",
                                            "dataset.download=false", "train.epochs=null", "train.iterations=1",
                                            "method.fisher.max_samples=16",  # the Fisher of a 2×2000 MLP: short
                                            "logger=none", "trainer.enable_progress_bar=false", "plots=false"],
                         fast=False)
    assert len(results["acc_matrix"]) == cfg.scenario.n_experiences


def test_split_cifar100_preset_runs_a_smoke_step(tmp_path, no_md5):  # noqa: F811
    tiny_cifar(tmp_path / "data", hundred=True, n=100)
    results = run_stream(tmp_path / "run", ["experiment=split_cifar100", "method=si",
                                            f"paths.data_dir={tmp_path / 'data'}",
                                            "dataset.download=false", "train.epochs=null", "train.iterations=1",
                                            "model.width=4", "logger=none", "trainer.enable_progress_bar=false",
                                            "plots=false"], fast=False)
    assert len(results["acc_matrix"]) == 10
    assert results["config"]["model"]["multihead"] is True
