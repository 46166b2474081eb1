"""Tails and distribution shift against the ORIGINAL real corpus (the real training split).

* ``rare_recall_{n}g_{band}``: of the real corpus's n-grams whose real count lies in a
  frequency band (1, 2-4, 5-16, 17+), the share the samples produce at least once: collapse
  forgets the rare bands first (Shumailov et al.).
* ``unigram_kl``: KL(real || samples) of word distributions in nats; the samples' distribution
  is add-one smoothed over the union vocabulary (otherwise one lost word makes it infinite).
* ``missing_mass``: real word probability mass of the words the samples never produce.
* ``reference_perplexity``: every sample scored by the frozen generation-0 model of its seed
  (Shumailov et al.'s figure): the token-level perplexity of all samples pooled (exp of their
  summed NLL over their summed tokens, EOS included), and the median, 90th and 99th percentile
  of the per-sample perplexities. No mean of per-sample perplexities is published: an empty
  sample (EOS at once) scores tens of thousands, and a handful of them would decide it; the
  pooled value weighs an empty sample as the one token it is. The per-sample values go to
  ``sample_perplexity.csv`` for the report's tail figures.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ouroboros.metrics.diversity import ngrams
from ouroboros.metrics.signature import EvalContext, MetricValue
from ouroboros.models.encoding import encode_examples
from ouroboros.models.scoring import sequence_nll

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 4  # 4: reference_perplexity pooled over tokens (was a mean decided by empties), p90/p99
# 3: the generated part only (real-prefix prompts: not the prefix)
BANDS = ((1, 1), (2, 4), (5, 16), (17, math.inf))


def band_name(lo: int, hi: float) -> str:
    """``1``, ``2-4``, ``17+``."""
    return f"{lo}" if lo == hi else (f"{lo}+" if math.isinf(hi) else f"{lo}-{int(hi)}")


def rare_recall(real: list[str], samples: list[str], n: int) -> dict[str, float]:
    """Band -> share of the real n-grams of that real-frequency band that the samples produce."""
    real_counts = Counter(g for t in real for g in ngrams(t.split(), n))
    produced = {g for t in samples for g in ngrams(t.split(), n)}
    out = {}
    for lo, hi in BANDS:
        band = [g for g, c in real_counts.items() if lo <= c <= hi]
        out[band_name(lo, hi)] = sum(g in produced for g in band) / len(band) if band else math.nan
    return out


def unigram_shift(real: list[str], samples: list[str]) -> tuple[float, float]:
    """(KL(real || add-one-smoothed samples) in nats, real mass of words never produced)."""
    p = Counter(w for t in real for w in t.split())
    q = Counter(w for t in samples for w in t.split())
    vocab = set(p) | set(q)
    p_total, q_total = sum(p.values()), sum(q.values()) + len(vocab)
    kl = sum(c / p_total * math.log((c / p_total) / ((q[w] + 1) / q_total)) for w, c in p.items())
    missing = sum(c for w, c in p.items() if w not in q) / p_total
    return kl, missing


def tails(ctx: EvalContext) -> list[MetricValue]:
    """Rare n-gram recall by band, unigram KL and missing mass against the real training set."""
    real = [ctx.task.text(e) for e in ctx.real_train]
    generated, seed = ctx.generated, ctx.seed
    n_samples = len(generated)
    params = {"against": "real train", "tokenizer": "whitespace"}
    out = []
    for n in (1, 2):
        for band, value in rare_recall(real, generated, n).items():
            out.append(MetricValue(f"rare_recall_{n}g_{band}", value, VERSION, n_samples, seed,
                                   {**params, "ngram": n, "real_count": band}, True))
    kl, missing = unigram_shift(real, generated)
    out += [MetricValue("unigram_kl", kl, VERSION, n_samples, seed,
                        {**params, "smoothing": "add-one on samples", "unit": "nats"}, False),
            MetricValue("missing_mass", missing, VERSION, n_samples, seed, params, False)]
    return out


def sample_nll(ctx: EvalContext) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: NLL in nats under the frozen generation-0 model and scored tokens."""
    examples = [{"source": s["source"], "target": s["target"],
                 "finished": s.get("finished", True)} for s in ctx.sample_rows]  # EOS if ended
    items = encode_examples(ctx.encoder, ctx.task, examples)
    return sequence_nll(ctx.reference_model, items, ctx.tokenizer.pad_token_id,
                        ctx.batch_size, ctx.device)


def sample_perplexities(ctx: EvalContext) -> np.ndarray:
    """Per-sample perplexity of the generated samples under the frozen generation-0 model."""
    nll, count = sample_nll(ctx)
    return np.exp(nll / np.maximum(count, 1))


def reference_perplexity(ctx: EvalContext) -> list[MetricValue]:
    """Pooled token perplexity of the samples under generation 0's model, and the median and
    upper percentiles of the per-sample perplexities."""
    if ctx.reference_model is None:
        raise ValueError("reference-perplexity needs the generation-0 model")
    nll, count = sample_nll(ctx)
    ppl = np.exp(nll / np.maximum(count, 1))
    ctx.artifacts["sample_perplexity"] = ppl.tolist()
    params = {"model": "generation 0 of this seed", "unit": "per-sample token perplexity"}
    n, seed = len(ppl), ctx.seed
    pooled = float(np.exp(nll.sum() / max(1, count.sum()))) if n else math.nan
    out = [MetricValue("reference_perplexity", pooled, VERSION, n, seed,
                       {"model": "generation 0 of this seed",
                        "unit": "token perplexity, pooled over samples", "eos": True}, None)]
    for name, q in (("median", 50), ("p90", 90), ("p99", 99)):
        value = float(np.percentile(ppl, q)) if n else math.nan
        out.append(MetricValue(f"reference_perplexity_{name}", value, VERSION, n, seed,
                               {**params, "percentile": q} if q != 50 else params, None))
    return out
