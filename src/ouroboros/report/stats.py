"""Statistics over seeds: intervals of means suited to each metric's range, Student-t intervals of
paired differences, exact paired tests.

Studies run 2 to 6 seeds. A percentile bootstrap over so few values covers the mean far less often
than it claims (about 50% at n = 2, 75% at n = 3 for a nominal 95%). An interval of a mean over
seeds is chosen by what the metric can be (``metric_range``), and never leaves that range:

* unbounded metrics: the Student-t interval, exact for normal seed-to-seed variation at n >= 2;
* positive scales (perplexity, entropy, lengths): the same t-interval cut at 0. The true mean is
  never below 0, so cutting there never loses it: the coverage is exactly the t-interval's;
* shares and scores with both ends (rates in [0, 1], BLEU/ROUGE in [0, 100]): a Wilson score
  interval with the seeds' own variance, {p : (mean - p)^2 <= t^2 k p(1 - p) / n} on the
  metric scaled to [0, 1], k = s^2 / (mean (1 - mean)) capped at 1 (a value in [0, 1] cannot vary
  more than mean (1 - mean)). Away from the ends it is the t-interval; near an end it bends
  instead of crossing it. tests/unit/test_stats.py measures every method's coverage by
  simulation: about 95% for shares that vary moderately, at least 95% for 0/1 shares, but
  only about 80-85% for shares heavily skewed towards 0 (Beta(0.2, 20) seeds; the t-interval:
  68-74%), as a rare event's rate (empty_rate) can be.

Seeds that all agree are shown as such, never as a zero-width interval; there is no interval at
n = 1. Policies are compared on the seeds they share (a paired design: the same seed gives the
same real data and generation 0 to every policy) with exact tests whose smallest achievable
p-value, 2^(1-n), is stated next to every verdict.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
ALPHA = 0.05
EXACT_FLIPS = 20      # enumerate all 2^n sign flips up to this many seeds (2^20 ~ 1e6 rows)
RANDOM_FLIPS = 100_000  # beyond it, a seeded random sample of sign flips


def t_bounds(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of the mean along the last axis, mean -+ t(1 - a/2, n-1) s / sqrt(n):
    exact coverage for normal values at any n >= 2; NaN bounds for n < 2."""
    from scipy.special import stdtrit  # the t quantile; imported on first use
    v = np.asarray(values, dtype=float)
    n = v.shape[-1]
    mean = v.mean(axis=-1)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return nan, nan
    half = stdtrit(n - 1, 1 - (1 - level) / 2) * v.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class Interval:
    """An interval of a mean over ``n`` seeds, with the method that made it."""

    low: float
    high: float
    n: int
    level: float = LEVEL
    method: str = "t-interval"
    equal: bool = False   # every seed gave the same value

    @property
    def label(self) -> str:
        """How to name it wherever it is shown, e.g. ``95% t-interval, n=3``."""
        if self.n < 2:
            return f"no interval, n={self.n}"
        if self.equal and not self.shown:
            return f"all {self.n} seeds equal"
        return f"{100 * self.level:g}% {self.method}, n={self.n}"

    @property
    def shown(self) -> bool:
        """Whether there are bounds to show (not for one seed, nor seeds that all agree
        where the method gives a zero-width interval)."""
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)


def t_interval(values: list[float], level: float = LEVEL) -> Interval:
    """The Student-t interval of the mean of ``values``: NaN bounds for fewer than 2, and for
    values that all agree (said so by ``equal``, never a zero-width interval)."""
    if _equal(values):
        return Interval(math.nan, math.nan, len(values), level, equal=True)
    lo, hi = t_bounds(np.asarray(values, dtype=float), level)
    return Interval(float(lo), float(hi), len(values), level)


def _equal(values) -> bool:
    v = np.asarray(values, dtype=float)
    return len(v) >= 2 and bool(np.all(v == v[0]))


# metric name (before any "@") -> the range its values can take; anything else is unbounded
SHARES = ("error_rate", "tail_coverage", "accuracy", "train_accuracy", "sample_accuracy",
          "accuracy_unparsed", "train_accuracy_unparsed", "sample_accuracy_unparsed",
          "mattr", "missing_mass", "unfinished_rate", "empty_rate", "empty_prediction_rate",
          "repetition_rate", "unique_predictions", "test_oov_rate", "test_targets_cut")
SHARE_PREFIXES = ("distinct_", "rare_recall_")
PERCENT = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "self_bleu")
POSITIVE = ("perplexity", "continuation_perplexity", "reference_perplexity",
            "reference_perplexity_median", "reference_perplexity_p90",
            "reference_perplexity_p99", "unigram_kl", "cross_entropy", "true_entropy",
            "unigram_entropy", "vocab_size", "sample_words", "prediction_words", "length_ratio")
POSITIVE_PREFIXES = ("entropy_",)


def metric_range(metric: str) -> tuple[float, float]:
    """What a metric's values can be: (0, 1) for shares, (0, 100) for scores x 100, (0, inf)
    for positive scales, (-inf, inf) otherwise (``kl_true_model`` is a Monte Carlo estimate and
    can fall below 0; traits depend on their scorer)."""
    base = metric.split("@")[0]
    if base in SHARES or base.startswith(SHARE_PREFIXES):
        return 0.0, 1.0
    if base in PERCENT:
        return 0.0, 100.0
    if base in POSITIVE or base.startswith(POSITIVE_PREFIXES):
        return 0.0, math.inf
    return -math.inf, math.inf


def wilson_interval(values: list[float], low: float = 0.0, high: float = 1.0,
                    level: float = LEVEL) -> Interval:
    """The Wilson score interval with the seeds' variance, for a mean of values in [low, high]
    (module docstring); inside [low, high] always. Seeds that all agree get none (NaN bounds,
    ``equal``): their spread says nothing, and a bound from seeds as Bernoulli trials would
    be far wider than one from seeds that differ by a hair."""
    from scipy.special import stdtrit
    v = (np.asarray(values, dtype=float) - low) / (high - low)
    n = len(v)
    if n < 2 or _equal(values):
        return Interval(math.nan, math.nan, n, level, "Wilson interval", _equal(values))
    m = float(v.mean())
    k = min(1.0, float(v.var(ddof=1)) / (m * (1 - m)))  # 0 < m < 1: the seeds differ
    c = float(stdtrit(n - 1, 1 - (1 - level) / 2))
    z2 = c * c * k / n
    centre = (m + z2 / 2) / (1 + z2)
    half = math.sqrt(z2 * m * (1 - m) + z2 * z2 / 4) / (1 + z2)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return Interval(low + lo * (high - low), low + hi * (high - low), n, level,
                    "Wilson interval")


def interval_for(metric: str, values: list[float], level: float = LEVEL) -> Interval:
    """The interval of the mean of ``values`` by the method suited to ``metric``'s range; seeds
    that all agree get none where the method's interval would have zero width."""
    low, high = metric_range(metric)
    if math.isfinite(high):
        return wilson_interval(values, low, high, level)
    iv = t_interval(values, level)
    if low == 0.0 and not iv.equal:
        cut = max(0.0, iv.low) if math.isfinite(iv.low) else iv.low  # NaN: one seed
        return Interval(cut, iv.high, iv.n, level, "t-interval cut at 0")
    return iv


def min_p_value(n: int) -> float:
    """Smallest two-sided p-value the sign test or the sign-flip test can give with n pairs."""
    return min(1.0, 2.0 ** (1 - n))


def sign_test_p(diffs: list[float]) -> float:
    """Exact two-sided sign test: P(a split at least as uneven as the observed one) under
    Binomial(m, 1/2), m the non-zero differences (ties carry no sign); 1 when m = 0."""
    pos = sum(d > 0 for d in diffs)
    m = pos + sum(d < 0 for d in diffs)
    k = min(pos, m - pos)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def sign_flip_p(diffs: list[float], seed: int = 0) -> float:
    """Exact paired permutation test: the share of the 2^n sign flips of the differences whose
    |sum| is at least the observed |sum| (exact when differences are symmetric about 0 under
    the null). Beyond EXACT_FLIPS seeds, (k + 1) / (B + 1) over B seeded random flips."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n > EXACT_FLIPS:
        rng = np.random.default_rng(seed)
        signs = rng.choice([-1.0, 1.0], size=(RANDOM_FLIPS, n))
    else:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        signs = 1.0 - 2.0 * bits
    sums = np.abs(signs @ d)
    observed = abs(d.sum())
    hits = int(np.sum(sums >= observed - 1e-9 * max(1.0, np.abs(d).sum())))  # float ties count
    return hits / len(signs) if n <= EXACT_FLIPS else (hits + 1) / (len(signs) + 1)


@dataclass(frozen=True)
class Paired:
    """policy - baseline on shared seeds, for one metric at one generation."""

    policy: str
    baseline: str
    metric: str
    generation: int
    mean: float
    interval: Interval   # t-interval of the mean difference
    wins: int            # seeds on which the policy is better (by the metric's direction)
    p_flip: float        # exact two-sided sign-flip (permutation) test
    p_sign: float        # exact two-sided sign test
    higher_is_better: bool | None = None
    diffs: tuple[float, ...] = ()  # the per-seed differences, in seed order

    @property
    def n_seeds(self) -> int:
        """How many seeds both policies have."""
        return self.interval.n

    def verdict(self, alpha: float = ALPHA) -> str:
        """"better"/"worse"/"differs" only when the sign-flip test rejects at ``alpha``;
        otherwise why not, naming the n that cannot reach it."""
        if min_p_value(self.n_seeds) >= alpha:
            return f"not significant (n={self.n_seeds} cannot reach p<{alpha:g})"
        if self.p_flip >= alpha:
            return f"not significant (p>={alpha:g})"
        if self.higher_is_better is None:
            return f"differs (p<{alpha:g})"
        good = (self.mean > 0) == self.higher_is_better
        return f"{'better' if good else 'worse'} (p<{alpha:g})"


def paired_differences(rows: list[dict], metric: str, generation: int, baseline: str,
                       higher_is_better: bool | None) -> list[Paired]:
    """Per policy: the mean difference to ``baseline`` over the seeds where both have a finite
    value, its t-interval, how many seeds favour the policy, and the exact paired tests."""
    by: dict[str, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if (r["metric"], r["generation"]) == (metric, generation) and not math.isnan(r["value"]):
            by[r["policy"]][r["seed"]] = r["value"]
    out = []
    for policy, values in by.items():
        if policy == baseline:
            continue
        seeds = sorted(set(values) & set(by.get(baseline, {})))
        if not seeds:
            continue
        diffs = [values[s] - by[baseline][s] for s in seeds]
        sign = 1 if higher_is_better else -1
        wins = sum(sign * d > 0 for d in diffs) if higher_is_better is not None else 0
        out.append(Paired(policy, baseline, metric, generation, float(np.mean(diffs)),
                          t_interval(diffs), wins, sign_flip_p(diffs), sign_test_p(diffs),
                          higher_is_better, tuple(diffs)))
    return out


# -- how many seeds a comparison needs ------------------------------------------------------

POWER = 0.8
MAX_SEEDS = 64         # the largest study size the seeds-needed search considers
SIMULATED_UP_TO = 12   # exact sign-flip test simulated up to this n; noncentral t beyond
POWER_SIMULATIONS = 4000


def sign_flip_power(effect: float, n: int, alpha: float = ALPHA,
                    simulations: int = POWER_SIMULATIONS, seed: int = 0) -> float:
    """P(the exact two-sided sign-flip test rejects at ``alpha``) with n seeds whose paired
    differences are Normal(effect, 1) (effect = mean / sd), by seeded simulation with every
    one of the 2^n sign flips enumerated."""
    if min_p_value(n) >= alpha:
        return 0.0
    rng = np.random.default_rng([seed, n])
    d = rng.normal(effect, 1.0, size=(simulations, n))
    bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    signs = 1.0 - 2.0 * bits                          # (2^n, n)
    sums = np.abs(d @ signs.T)                        # (simulations, 2^n)
    observed = np.abs(d.sum(axis=1, keepdims=True))
    p = np.mean(sums >= observed - 1e-9 * np.abs(d).sum(axis=1, keepdims=True), axis=1)
    return float(np.mean(p < alpha))


def t_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """P(the two-sided paired t-test rejects at ``alpha``) with n seeds whose differences are
    Normal(effect, 1): the noncentral t. The sign-flip test's power converges to it."""
    from scipy.stats import nct
    from scipy.stats import t as student
    crit = student.ppf(1 - alpha / 2, n - 1)
    delta = effect * math.sqrt(n)
    power = float(nct.sf(crit, n - 1, delta) + nct.cdf(-crit, n - 1, delta))
    if not math.isfinite(power):  # scipy gives NaN for effects far past any doubt
        return 1.0 if abs(delta) > crit else 0.0
    return power


def seeds_needed(diffs: list[float], power: float = POWER, alpha: float = ALPHA,
                 max_seeds: int = MAX_SEEDS) -> int | None:
    """The fewest seeds with which the exact sign-flip test reaches p < ``alpha`` with
    probability >= ``power``, if seed-level differences were Normal with the observed mean and
    standard deviation (simulated exactly up to SIMULATED_UP_TO seeds, the noncentral t beyond).
    None when no effect is observed, there are fewer than two differences, or more than
    ``max_seeds`` would be needed. The observed effect is itself an estimate from few seeds:
    the answer is a planning figure, not a promise."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2 or not np.all(np.isfinite(d)) or abs(d.mean()) == 0:
        return None
    sd = d.std(ddof=1)
    first = next(n for n in range(2, 64) if min_p_value(n) < alpha)
    if sd <= 1e-9 * abs(d.mean()):  # every seed moved alike (to rounding): the smallest n
        return first
    effect = abs(d.mean()) / sd
    for n in range(first, max_seeds + 1):
        reached = t_power(effect, n, alpha)
        # Up to SIMULATED_UP_TO seeds the exact test is simulated, where the t-test's power
        # says it could be reached (the two differ by about 0.01 there: measured at n = 10, 12).
        if n <= SIMULATED_UP_TO and reached >= power - 0.1:
            reached = sign_flip_power(effect, n, alpha)
        if reached >= power:
            return n
    return None
