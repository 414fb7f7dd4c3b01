"""clexp.review.stats against closed forms, scipy and independent computations on known samples: the t and
bootstrap intervals, the IQM, the probability of improvement, the seeds a paired t test needs (G*Power's
table and a Monte Carlo power), selection shares, the stratified bootstrap and the performance profile."""

import math

import numpy as np
import pytest
from scipy import stats as st

from clexp.review import stats


def test_t_interval_is_the_closed_form():
    x = [0.70, 0.80, 0.75]  # n = 3: t(0.975, 2) = 4.302652729911275 (tables)
    iv = stats.interval(x)
    half = 4.302652729911275 * np.std(x, ddof=1) / math.sqrt(3)
    assert iv.method == "t" and iv.n == 3 and iv.iqm is None
    assert iv.mean == pytest.approx(0.75) and (iv.lo, iv.hi) == pytest.approx((0.75 - half, 0.75 + half))
    x4 = [1.0, 2.0, 4.0, 7.0]  # n = 4: t(0.975, 3) = 3.182446305284263
    half = 3.182446305284263 * np.std(x4, ddof=1) / 2
    assert (stats.interval(x4).lo, stats.interval(x4).hi) == pytest.approx((3.5 - half, 3.5 + half))


def test_one_value_has_no_interval_and_non_finite_values_are_left_out():
    iv = stats.interval([0.5, math.nan, None, math.inf])
    assert (iv.mean, iv.lo, iv.hi, iv.n, iv.method) == (0.5, None, None, 1, "")
    assert iv.covers(123.0)  # no interval: nothing excluded
    assert stats.interval([]).mean is None


def test_bootstrap_interval_matches_an_independent_percentile_bootstrap():
    x = np.random.default_rng(3).normal(0.8, 0.05, size=20)
    iv = stats.interval(x)
    assert iv.method == "bootstrap" and iv.mean == pytest.approx(x.mean())
    rng = np.random.default_rng(99)  # a different generator and 50,000 resamples: the same interval ± MC error
    means = x[rng.integers(0, len(x), (50_000, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert iv.lo == pytest.approx(lo, abs=0.1 * se) and iv.hi == pytest.approx(hi, abs=0.1 * se)
    assert (iv.lo, iv.hi) == (stats.interval(x).lo, stats.interval(x).hi)  # fixed seed: the same report
    # the percentile bootstrap of the mean is narrower than the t interval by about √((n−1)/n)·z/t
    t_lo, t_hi = stats.t_interval(x)
    assert 0.85 < (iv.hi - iv.lo) / (t_hi - t_lo) < 1.0


def test_iqm_is_the_mean_of_the_middle_half():
    x = [10, 1, 2, 3, 4, 5, 6, 100]  # n = 8: 2 cut each side → mean of 3, 4, 5, 6
    assert stats.iqm(x) == pytest.approx(4.5)
    assert stats.interval(x).iqm == pytest.approx(4.5)


def test_probability_of_improvement_is_mann_whitney_u_over_mn():
    x, y = [1.0, 2.0, 3.0], [2.0, 2.0, 4.0]
    # pairs where x wins: 3>2, 3>2; ties: 2=2 twice (½ each) → (2 + 1) / 9
    assert stats.probability_of_improvement(x, y) == pytest.approx(3 / 9)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 0.1, 7), rng.normal(0.5, 0.1, 9)
    u = st.mannwhitneyu(a, b, alternative="two-sided").statistic  # U of the first sample
    assert stats.probability_of_improvement(a, b) == pytest.approx(u / (7 * 9))
    ints_a, ints_b = rng.integers(0, 5, 30), rng.integers(0, 5, 40)  # many ties: against every pair counted
    pairs = [(i > j) + 0.5 * (i == j) for i in ints_a for j in ints_b]
    assert stats.probability_of_improvement(ints_a, ints_b) == pytest.approx(sum(pairs) / len(pairs))
    # lower is better (forgetting): P(X < Y) = 1 − P(X > Y) without ties
    assert stats.probability_of_improvement(a, b, higher_is_better=False) == pytest.approx(1 - u / 63)


def test_seeds_needed_matches_g_power_and_a_monte_carlo_power():
    # G*Power, t test of matched pairs, two tails, α = 0.05, power 0.8: dz = 0.5 → 34 pairs
    assert stats.seeds_needed(0.5, 1.0) == 34
    assert stats.seeds_needed(-0.05, 0.1) == 34  # only |Δ| / sd matters
    n = stats.seeds_needed(1.0, 1.0)
    rng = np.random.default_rng(1)

    def power(k):  # the share of 20,000 simulated paired experiments a t test at 5 % rejects
        d = rng.normal(1.0, 1.0, (20_000, k))
        return np.mean(st.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05)

    assert power(n) >= 0.79 and power(n - 1) < 0.8  # the smallest n with 80 % power (MC error ~0.003)
    assert stats.seeds_needed(0.0, 1.0) is None and stats.seeds_needed(1.0, 0.0) is None


def test_paired_comparison_on_common_seeds():
    naive = {0: 0.50, 1: 0.60, 2: 0.55, 3: 0.40}
    method = {0: 0.52, 1: 0.61, 2: 0.54, 9: 0.99}  # seed 3 and 9 not in both: left out
    p = stats.paired(method, naive)
    d = np.array([0.02, 0.01, -0.01])
    assert p.n == 3 and p.better == 2 and p.diff.mean == pytest.approx(d.mean())
    assert (p.diff.lo, p.diff.hi) == pytest.approx(stats.t_interval(d))
    assert not p.distinguishable  # the interval covers 0
    assert p.prob_improvement == pytest.approx(stats.probability_of_improvement([0.52, 0.61, 0.54],
                                                                                [0.50, 0.60, 0.55]))
    assert p.seeds_observed == stats.seeds_needed(d.mean(), d.std(ddof=1))
    clear = stats.paired({s: v + 0.1 for s, v in naive.items()}, naive)
    assert clear.distinguishable and clear.better == 4
    worse = stats.paired({0: 0.3, 1: 0.2}, {0: 0.1, 1: 0.1}, higher_is_better=False)  # forgetting: higher is worse
    assert worse.better == 0


def test_selection_shares_have_the_bootstrap_probabilities():
    # strength 1: always 0.5; strength 10: seeds 0.4 and 0.6 → its resampled mean is 0.6 with probability ¼,
    # 0.5 (a tie: the smaller strength wins) with ½, 0.4 with ¼
    shares = stats.selection_shares({1.0: [0.5, 0.5], 10.0: [0.4, 0.6]}, resamples=4000)
    assert list(shares) == [1.0, 10.0] and shares[10.0] == pytest.approx(0.25, abs=0.03)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert stats.selection_shares({1.0: [0.9, 0.91], 10.0: [0.1, 0.2]})[1.0] == 1.0


def test_aggregate_is_a_stratified_bootstrap_of_the_iqm():
    # scenario A all 0, B all 1: a stratified resample keeps four of each, so the IQM is always 0.5
    # (a bootstrap of the pooled runs would not be)
    agg = stats.aggregate([[0.0] * 4, [1.0] * 4])
    assert (agg.iqm, agg.lo, agg.hi, agg.n) == (0.5, 0.5, 0.5, 8)
    a, b = [0.5, 0.6, 0.7, 0.8], [0.2, 0.25, 0.3, 0.9]
    agg = stats.aggregate([a, b])
    assert agg.iqm == pytest.approx(st.trim_mean(a + b, 0.25)) and agg.lo <= agg.iqm <= agg.hi


def test_performance_profile_averages_the_scenarios():
    prof = stats.profile([[0.2, 0.4], [0.6, 0.8]], np.array([0.1, 0.3, 0.5, 0.7, 0.9]))
    assert list(prof) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
