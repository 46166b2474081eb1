"""Benchmark: scoring speed of the ground-truth language (exact log-probabilities).

The issue's bar: 10,000 sentences in a couple of seconds on one core. Baseline in the same run:
sampling the same sentences (the cheapest thing the language does). Scoring runs uncached
(``logprob`` per sentence) and cached (``logprobs``, which reuses repeated sentences).

    python benchmarks/bench_grammar.py [--n 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ouroboros.data.grammar import GroundTruthLanguage


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    lang = GroundTruthLanguage()
    texts = lang.sample(args.n, np.random.default_rng(0))
    sample = [timed(lambda r=r: lang.sample(args.n, np.random.default_rng(r)))
              for r in range(args.repeats)]
    uncached = [timed(lambda: [lang.logprob(s) for s in texts]) for _ in range(args.repeats)]
    cached = [timed(lambda: lang.logprobs(texts)) for _ in range(args.repeats)]
    base = statistics.median(sample)
    print(f"{args.n} sentences, median of {args.repeats} repeats, one process")
    for name, ts in (("sample (baseline)", sample), ("score, uncached", uncached),
                     ("score, cached", cached)):
        med = statistics.median(ts)
        print(f"{name:<20}{med:8.3f} s  {args.n / med:>10,.0f} sentences/s  "
              f"{med / base:5.2f}x sampling time")


if __name__ == "__main__":
    main()
