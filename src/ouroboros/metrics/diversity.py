"""Lexical diversity of a set of generated texts, each metric defined here with its parameters
(diversity packages disagree with each other: see ../shared/REFERENCE.md). Words are
whitespace tokens; docs/metrics.md gives every definition."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ouroboros.metrics.selfbleu import self_bleu
from ouroboros.metrics.signature import EvalContext, MetricValue

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 4  # 4: distinct_n_window (length-controlled); no ttr (it equals distinct_1)
# 3: the generated part only (real-prefix prompts: not the prefix)


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of a token list."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the whole set (Li et al. 2016); 0 for none."""
    grams = [g for t in texts for g in ngrams(t.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def ngram_entropy(texts: list[str], n: int = 1) -> float:
    """Shannon entropy (nats) of the pooled n-gram distribution."""
    counts = Counter(g for t in texts for g in ngrams(t.split(), n))
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def unigram_entropy(texts: list[str]) -> float:
    """Shannon entropy (nats) of the pooled word distribution."""
    return ngram_entropy(texts, 1)


def distinct_n_window(texts: list[str], n: int, window: int = 1000) -> float:
    """Length-controlled distinct-n: the samples' n-grams (none across two samples) in order,
    cut into consecutive chunks of ``window`` n-grams; the mean distinct share of the full
    chunks (plain distinct-n when there are fewer than ``window``). Pooled distinct-n rises
    when samples merely get shorter (fewer n-grams in all, so fewer repeats); a chunk always
    holds ``window`` n-grams, so this does not."""
    grams = [g for t in texts for g in ngrams(t.split(), n)]
    if len(grams) < window:
        return distinct_n(texts, n)
    chunks = [grams[i:i + window] for i in range(0, len(grams) - window + 1, window)]
    return float(np.mean([len(set(c)) / window for c in chunks]))


def type_token_ratio(texts: list[str]) -> float:
    """Distinct words / words over the whole set (depends on how much text there is)."""
    words = [w for t in texts for w in t.split()]
    return len(set(words)) / len(words) if words else 0.0


def mattr(texts: list[str], window: int = 50) -> float:
    """Moving-average TTR (Covington & McFall 2010): the mean TTR of every ``window``-word
    window of the texts' words in order; plain TTR when there are fewer words. Unlike TTR it
    does not fall just because there is more text."""
    words = [w for t in texts for w in t.split()]
    if len(words) <= window:
        return type_token_ratio(texts)
    counts = Counter(words[:window])
    total = len(counts)
    for k in range(window, len(words)):  # slide: add words[k], drop words[k - window]
        counts[words[k]] += 1
        old = words[k - window]
        counts[old] -= 1
        if not counts[old]:
            del counts[old]
        total += len(counts)
    return total / ((len(words) - window + 1) * window)


def zipf_exponent(texts: list[str], max_rank: int = 1000) -> float:
    """The exponent s of frequency ~ rank^-s: minus the least-squares slope of log frequency
    on log rank over the ``max_rank`` most frequent words (NaN with fewer than 3 types)."""
    freqs = sorted(Counter(w for t in texts for w in t.split()).values(), reverse=True)
    freqs = freqs[:max_rank]
    if len(freqs) < 3:
        return float("nan")
    ranks = np.log(np.arange(1, len(freqs) + 1))
    return float(-np.polyfit(ranks, np.log(freqs), 1)[0])


def repetition_rate(texts: list[str], n: int = 4) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same text (degenerate loops)."""
    repeated = total = 0
    for t in texts:
        grams = ngrams(t.split(), n)
        repeated += len(grams) - len(set(grams))
        total += len(grams)
    return repeated / total if total else 0.0


def diversity(ctx: EvalContext) -> list[MetricValue]:
    """Distinct-1..max_n, unigram entropy and vocabulary size of the generated samples."""
    texts, seed = ctx.generated, ctx.seed
    n = len(texts)
    params = {"tokenizer": "whitespace", "set": "generated"}
    values = [MetricValue(f"distinct_{k}", distinct_n(texts, k), VERSION, n, seed, params, True)
              for k in range(1, ctx.options.get("max_n", 3) + 1)]
    values.append(MetricValue("unigram_entropy", unigram_entropy(texts), VERSION, n, seed,
                              {**params, "unit": "nats"}, True))
    values += [MetricValue(f"entropy_{k}", ngram_entropy(texts, k), VERSION, n, seed,
                           {**params, "unit": "nats"}, True)
               for k in range(2, ctx.options.get("max_n", 3) + 1)]
    chunk = ctx.options.get("distinct_window", 1000)
    values += [MetricValue(f"distinct_{k}_window", distinct_n_window(texts, k, chunk), VERSION,
                           n, seed, {**params, "window": chunk}, True)
               for k in range(1, ctx.options.get("max_n", 3) + 1)]
    window = ctx.options.get("mattr_window", 50)
    values += [
        MetricValue("mattr", mattr(texts, window), VERSION, n, seed, {**params, "window": window},
                    True),
        MetricValue("zipf_exponent", zipf_exponent(texts), VERSION, n, seed,
                    {**params, "fit": "least-squares log-log", "max_rank": 1000}, None),
        MetricValue("repetition_rate", repetition_rate(texts), VERSION, n, seed,
                    {**params, "ngram": 4, "within": "sample"}, False),
        MetricValue("self_bleu", self_bleu(texts), VERSION, n, seed,
                    {"sacrebleu": "sentence_bleu, 13a, exp smoothing, effective order",
                     "references": "all other samples"}, False),
    ]
    vocab = len({w for t in texts for w in t.split()})
    values.append(MetricValue("vocab_size", float(vocab), VERSION, n, seed, params, True))
    return values
