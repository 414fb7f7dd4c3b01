"""The geometry experiments run in seconds, write their files, and their numbers show the claims."""

import json

import pytest

from tests.conftest import clexp_cli

PNG = b"\x89PNG\r\n\x1a\n"


def run_experiment(tmp_path, name, *extra):
    out = clexp_cli([f"experiment={name}", "logger=none", "hydra.run.dir=run", *extra], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run" / f"{name}.png").read_bytes().startswith(PNG)
    return json.loads((tmp_path / "run" / f"{name}.json").read_text())


@pytest.mark.slow
def test_ngd_linreg_is_faster_and_stable(tmp_path):
    runs = run_experiment(tmp_path, "ngd_linreg")["runs"]
    sgd, ngd = runs["sgd_lr0.15"]["steps_to_level"], runs["ngd_lr0.15"]["steps_to_level"]
    assert ngd is not None and (sgd is None or ngd * 4 < sgd)  # far fewer steps
    fast = runs["ngd_lr0.5"]
    assert fast["steps_to_level"] is not None and fast["steps_to_level"] < 15
    assert fast["final_loss"] <= min(fast["losses"]) * 1.0001  # stable: it ends at its lowest loss
    assert all(b <= a * 1.0001 for a, b in zip(fast["losses"], fast["losses"][1:]))  # monotone


@pytest.mark.slow
def test_fisher_vs_empirical_fields(tmp_path):
    numbers = run_experiment(tmp_path, "fisher_vs_empirical")
    angles = numbers["mean_angle_deg"]
    assert angles["natural"] < 0.01  # least squares: the natural gradient points at the optimum everywhere
    assert angles["empirical"] > 20 and angles["gradient"] > 10
    assert max(numbers["final_distance"]["natural"]) < 1e-3
    assert max(numbers["final_distance"]["empirical"]) > 0.3


@pytest.mark.slow
def test_fisher_spectrum_trace_ratios(tmp_path):
    numbers = run_experiment(tmp_path, "fisher_spectrum", "train.epochs=3")
    r = numbers["trace_ratio"]
    assert r["exact"] == 1.0
    assert 0.7 < r["sampled"] < 1.3  # an unbiased estimate of the exact Fisher
    assert r["batch"] < 0.2 * r["empirical"]  # squaring the batch mean cancels most of it
    assert numbers["top1pct_share_of_exact_trace"] > 0.05  # a long tail: 1% of the weights carry much


@pytest.mark.slow
def test_adam_vs_fisher_correlation(tmp_path):
    numbers = run_experiment(tmp_path, "adam_vs_fisher", "train.epochs=3")
    assert -1 <= numbers["spearman"] <= 1 and numbers["spearman"] > 0.2


@pytest.mark.slow
def test_kl_gaussians_same_distance_different_kl(tmp_path):
    pairs = run_experiment(tmp_path, "kl_gaussians")["pairs"]
    assert len({round(p["l2_distance"], 9) for p in pairs}) == 1
    kls = [p["kl"] for p in pairs]
    assert max(kls) / min(kls) > 100
    for p in pairs:
        assert p["kl"] == pytest.approx(p["kl_numeric"], rel=1e-6)
