"""How sure a sweep's numbers are: intervals over seeds, paired comparisons, seeds needed, aggregates.

The reference is Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice" (its library
rliable): interquartile mean, stratified percentile bootstrap intervals, probability of improvement and
performance profiles. The computations go through scipy.stats (already a dependency of the stack):

- `interval(x)`: the mean over seeds with a 95 % interval — Student's t interval for n < 5 (a bootstrap of
  fewer than five values cannot reach the tails), scipy.stats.bootstrap's percentile interval (2,000
  resamples, fixed seed: the same report every time) for n ≥ 5; the IQM beside it for n ≥ 5.
- `paired(a, b)`: two configurations on the seeds both ran: the mean paired difference with its interval,
  the sign count (k of n seeds better), and rliable's probability of improvement P(X > Y) (the
  Mann–Whitney U statistic over all pairs of runs, divided by m·n; ties count one half).
- `seeds_needed(delta, sd)`: the smallest number of seeds for which a two-sided paired t test at
  α = 0.05 detects a true difference `delta` with 80 % power (noncentral t), given the paired
  differences' standard deviation `sd`.
- `selection_shares(...)`: how often each strength would be selected when the seeds are resampled.
- `aggregate(...)`: IQM over scenarios with a stratified bootstrap interval (runs resampled within each
  scenario), and `profile(...)`: the performance profile (fraction of runs above τ, averaged over
  scenarios).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
MIN_BOOTSTRAP = 5  # below: the t interval
BOOTSTRAP_NAME = f"percentile bootstrap ({RESAMPLES} resamples, seed {SEED})"
T_NAME = "t"
ALPHA, POWER = 0.05, 0.8


@dataclass(frozen=True)
class Interval:
    """A mean over n values and its 95 % interval (`lo`, `hi`: None for n < 2), how it was computed
    (`method`: 't', 'bootstrap', or '' for n < 2), and the IQM for n ≥ 5 (else None)."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int
    method: str
    iqm: float | None = None

    def covers(self, value: float) -> bool:
        """Whether the interval holds `value` (True when there is no interval: nothing is excluded)."""
        return self.lo is None or self.lo <= value <= self.hi


def _clean(values) -> np.ndarray:
    x = np.asarray([v for v in values if isinstance(v, (int, float, np.integer, np.floating))
                    and not isinstance(v, (bool, np.bool_))], dtype=float)
    return x[np.isfinite(x)]


def iqm(values) -> float:
    """The interquartile mean: the mean of the middle 50 % (scipy.stats.trim_mean, 25 % cut each side)."""
    return float(st.trim_mean(np.asarray(values, dtype=float), 0.25, axis=None))


def t_interval(x: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """mean ± t_{(1+c)/2, n−1} · s/√n."""
    mean, sem = float(np.mean(x)), float(st.sem(x))
    if sem == 0:
        return mean, mean
    lo, hi = st.t.interval(confidence, len(x) - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


def bootstrap_interval(x: np.ndarray, statistic=np.mean, confidence: float = CONFIDENCE,
                       resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """scipy.stats.bootstrap's percentile interval of `statistic` (fixed seed; memory bounded by batches)."""
    if np.ptp(x) == 0:
        v = float(statistic(x))
        return v, v
    batch = max(1, min(resamples, 4_000_000 // max(1, len(x))))
    res = st.bootstrap((x,), statistic, confidence_level=confidence, n_resamples=resamples, method="percentile",
                       vectorized=True, batch=batch, random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def interval(values, confidence: float = CONFIDENCE) -> Interval:
    """The mean of the finite values with its interval: t for 2 ≤ n < 5, percentile bootstrap for n ≥ 5."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Interval(None, None, None, 0, "")
    mean = float(np.mean(x))
    if n == 1:
        return Interval(mean, None, None, 1, "")
    if n < MIN_BOOTSTRAP:
        lo, hi = t_interval(x, confidence)
        return Interval(mean, lo, hi, n, "t")
    lo, hi = bootstrap_interval(x, confidence=confidence)
    return Interval(mean, lo, hi, n, "bootstrap", iqm(x))


def interval_label(method: str) -> str:
    return {"t": "t interval (n < 5)", "bootstrap": BOOTSTRAP_NAME}.get(method, "")


# ------------------------------------------------------------------------------------------ paired


def probability_of_improvement(x, y, higher_is_better: bool = True) -> float | None:
    """rliable's P(X > Y) on one task: the share of all (x_i, y_j) pairs where x is better, ties
    counting one half = the Mann–Whitney U statistic of x over m·n (scipy.stats.mannwhitneyu: from ranks,
    O((m+n) log(m+n)), not the m·n pairs). `higher_is_better=False`: P(X < Y)."""
    x, y = _clean(x), _clean(y)
    if not len(x) or not len(y):
        return None
    if not higher_is_better:
        x, y = -x, -y
    if np.ptp(np.concatenate([x, y])) == 0:
        return 0.5  # all equal: every pair a tie
    u = st.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").statistic
    return float(u / (len(x) * len(y)))


def seeds_needed(delta: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 limit: int = 100_000) -> int | None:
    """The smallest n ≥ 2 for which a two-sided paired t test at level `alpha` has `power` against a true
    mean difference `delta` when the differences' standard deviation is `sd` (power from the noncentral t
    distribution, nc = |delta|/sd · √n). None when it cannot be said (sd = 0 or delta = 0) or n > `limit`."""
    if not (math.isfinite(delta) and math.isfinite(sd)) or sd <= 0 or delta == 0:
        return None
    d = abs(delta) / sd
    z = st.norm.ppf(1 - alpha / 2) + st.norm.ppf(power)
    start = max(2, int((z / d) ** 2) - 2)  # the normal approximation is a lower bound up to ~2
    if start > limit:
        return None
    n = np.arange(start, min(limit, start + 64) + 1)
    while True:
        df = n - 1
        crit = st.t.ppf(1 - alpha / 2, df)
        achieved = st.nct.sf(crit, df, d * np.sqrt(n)) + st.nct.cdf(-crit, df, d * np.sqrt(n))
        hit = np.nonzero(achieved >= power)[0]
        if len(hit):
            return int(n[hit[0]])
        if n[-1] >= limit:
            return None
        n = np.arange(n[-1] + 1, min(limit, n[-1] + 256) + 1)


@dataclass(frozen=True)
class Paired:
    """`a` against `b` on their common seeds: the mean difference a − b with its interval, how many seeds
    favour `a` (`better` of `n`), the probability of improvement, whether the interval excludes 0, and the
    seeds a paired t test needs for 80 % power at the observed difference and at a difference of `unit`."""

    diff: Interval
    better: int
    n: int
    prob_improvement: float | None
    distinguishable: bool
    sd: float | None
    seeds_observed: int | None
    seeds_unit: int | None


def paired(a: dict, b: dict, higher_is_better: bool = True, unit: float = 0.01) -> Paired | None:
    """`a`, `b`: {seed: value}. None when they share no seed with finite values."""
    seeds = sorted(s for s in a.keys() & b.keys() if _clean([a[s], b[s]]).size == 2)
    if not seeds:
        return None
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    d = x - y
    diff = interval(d)
    better = int(np.sum(d > 0) if higher_is_better else np.sum(d < 0))
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else None
    seeds_observed = seeds_needed(diff.mean, sd) if sd else None
    seeds_unit = seeds_needed(unit, sd) if sd else None
    return Paired(diff, better, len(d), probability_of_improvement(x, y, higher_is_better),
                  diff.lo is not None and not diff.covers(0.0), sd, seeds_observed, seeds_unit)


# ------------------------------------------------------------------------------------------ selection


def selection_shares(scores: dict, resamples: int = 1000, seed: int = SEED) -> dict:
    """{strength: [validation scores over seeds]} → {strength: share of `resamples` bootstrap resamples
    (seeds drawn with replacement, within each strength) in which that strength has the best mean score}.
    Ties go to the smaller strength, as the selection itself breaks them. Strengths in ascending order."""
    from clexp.review.records import order

    strengths = sorted(scores, key=order)
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, len(strengths)))
    for j, s in enumerate(strengths):
        x = _clean(scores[s])
        step = max(1, 2_000_000 // max(1, len(x)))
        for start in range(0, resamples, step):
            stop = min(resamples, start + step)
            means[start:stop, j] = x[rng.integers(0, len(x), (stop - start, len(x)))].mean(axis=1)
    wins = np.bincount(np.argmax(means, axis=1), minlength=len(strengths))
    return {s: float(w) / resamples for s, w in zip(strengths, wins)}


# ------------------------------------------------------------------------------------------ aggregates


def aggregate(per_scenario: list, resamples: int = RESAMPLES, seed: int = SEED) -> Interval | None:
    """The IQM of the runs of all scenarios (`per_scenario`: one list of scores per scenario) with a
    stratified percentile bootstrap interval: each resample draws runs with replacement within each
    scenario (rliable's stratified bootstrap)."""
    groups = [_clean(g) for g in per_scenario]
    groups = [g for g in groups if len(g)]
    if not groups:
        return None
    pooled = np.concatenate(groups)
    point = iqm(pooled)
    rng = np.random.default_rng(seed)
    boots = np.empty(resamples)
    for b in range(resamples):
        boots[b] = iqm(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups]))
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return Interval(float(np.mean(pooled)), float(lo), float(hi), len(pooled), "stratified bootstrap", point)


def profile(per_scenario: list, taus: np.ndarray) -> np.ndarray:
    """The performance profile: for each τ, the fraction of runs scoring above τ, averaged over the
    scenarios (each scenario weighs the same, as in rliable)."""
    groups = [_clean(g) for g in per_scenario]
    groups = [g for g in groups if len(g)]
    return np.mean([(g[None, :] > np.asarray(taus)[:, None]).mean(axis=1) for g in groups], axis=0)
