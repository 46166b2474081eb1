"""Benchmark: exact self-BLEU vs the naive sacrebleu definition on 2,000 samples.

The naive definition calls ``sacrebleu.sentence_bleu(s_i, all others)`` for every sample: on
2,000 samples that is minutes, so it is timed on the first ``--naive`` samples (each still
against all 1,999 others) and scaled to 2,000; those samples' scores are also checked to be
identical. Medians over ``--repeats`` for the fast version.

    python benchmarks/bench_selfbleu.py [--n 2000] [--naive 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import sacrebleu

from ouroboros.data.grammar import GroundTruthLanguage
from ouroboros.metrics.selfbleu import self_bleu_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--naive", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    texts = GroundTruthLanguage().sample(args.n, np.random.default_rng(0))
    fast_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fast = self_bleu_scores(texts)
        fast_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    naive = [sacrebleu.sentence_bleu(texts[i], texts[:i] + texts[i + 1:]).score
             for i in range(args.naive)]
    naive_per_sample = (time.perf_counter() - t0) / args.naive
    assert np.array_equal(fast[:args.naive], naive), "self-BLEU differs from the naive one"
    fast_med = statistics.median(fast_times)
    naive_total = naive_per_sample * args.n
    print(f"self-BLEU on {args.n} samples (mean {fast.mean():.3f}); identical to naive "
          f"sacrebleu on the {args.naive} samples checked")
    print(f"naive  {naive_total:10.2f} s  (measured on {args.naive} samples, x{args.n})")
    print(f"fast   {fast_med:10.3f} s  (median of {args.repeats})")
    print(f"ratio  {naive_total / fast_med:10.0f}x")


if __name__ == "__main__":
    main()
