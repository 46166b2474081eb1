"""Lexical diversity of a set of generated texts: distinct-n, unigram entropy, vocabulary."""

from __future__ import annotations

import math
from collections import Counter

from ouroboros.metrics.signature import EvalContext, MetricValue

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 1


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of a token list."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the whole set (Li et al. 2016); 0 for none."""
    grams = [g for t in texts for g in ngrams(t.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def unigram_entropy(texts: list[str]) -> float:
    """Shannon entropy (nats) of the pooled word distribution."""
    counts = Counter(w for t in texts for w in t.split())
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def diversity(ctx: EvalContext) -> list[MetricValue]:
    """Distinct-1..max_n, unigram entropy and vocabulary size of the generated samples."""
    texts, n, seed = ctx.samples, len(ctx.samples), ctx.seed
    params = {"tokenizer": "whitespace", "set": "generated"}
    values = [MetricValue(f"distinct_{k}", distinct_n(texts, k), VERSION, n, seed, params, True)
              for k in range(1, ctx.options.get("max_n", 3) + 1)]
    values.append(MetricValue("unigram_entropy", unigram_entropy(texts), VERSION, n, seed,
                              {**params, "unit": "nats"}, True))
    vocab = len({w for t in texts for w in t.split()})
    values.append(MetricValue("vocab_size", float(vocab), VERSION, n, seed, params, True))
    return values
