"""Statistics over seeds: seeded bootstrap intervals of means, medians, paired differences.

Collapse quantities are noisy and heavy-tailed, so every summary over seeds comes with an
interval and a median, and policies are compared on the seeds they share (a paired design:
the same seed gives the same real data and generation 0 to every policy).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


def bootstrap_ci(values: list[float], seed: int = 0, level: float = 0.95,
                 resamples: int = RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (the value itself for a single number)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float(v.mean())
    rng = np.random.default_rng([seed, len(v)])
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Paired:
    """policy - baseline on shared seeds, for one metric at one generation."""

    policy: str
    baseline: str
    metric: str
    generation: int
    mean: float
    low: float
    high: float
    n_seeds: int
    wins: int  # seeds on which the policy is better than the baseline (by the metric's direction)


def paired_differences(rows: list[dict], metric: str, generation: int, baseline: str,
                       higher_is_better: bool | None) -> list[Paired]:
    """Per policy: mean difference to ``baseline`` over the seeds both have, with its
    bootstrap interval and how many seeds favour the policy."""
    by: dict[str, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["metric"] == metric and r["generation"] == generation:
            by[r["policy"]][r["seed"]] = r["value"]
    out = []
    for policy, values in by.items():
        if policy == baseline:
            continue
        seeds = sorted(set(values) & set(by.get(baseline, {})))
        if not seeds:
            continue
        diffs = [values[s] - by[baseline][s] for s in seeds]
        lo, hi = bootstrap_ci(diffs)
        sign = 1 if higher_is_better else -1
        wins = sum(sign * d > 0 for d in diffs) if higher_is_better is not None else 0
        out.append(Paired(policy, baseline, metric, generation, float(np.mean(diffs)), lo, hi,
                          len(seeds), wins))
    return out
