"""The benchmark scripts run in their tiny mode (this checks that they work, not their speed)."""

import pytest


@pytest.mark.slow
def test_benchmarks_run_in_tiny_mode(capsys):
    from bench.__main__ import main

    assert main(["--tiny", "--only", "bench_overhead", "bench_penalty", "bench_fisher", "bench_ngd", "bench_kfac",
                 "bench_augment", "bench_ewcpp", "bench_constraints", "bench_er"]) == 0
    out = capsys.readouterr().out
    assert "overhead" in out and "si step vs naive" in out and "ewc buffers 20 vs 2" in out
    assert "exact / epoch" in out and "ngd step vs sgd" in out and "kfac_ewc step vs naive" in out
    assert "crop+flip step vs none" in out
    assert "Fisher updates per step, naive steps, MLP" in out and "whole ewcpp step vs naive, CNN" in out
    assert "gpm step vs naive, MLP" in out and "agem step vs naive, CNN" in out
    assert "er step vs naive, MLP" in out and "er step vs naive, CNN" in out
