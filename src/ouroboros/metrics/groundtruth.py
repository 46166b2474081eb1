"""Exact collapse measures against the built-in ground-truth language.

* error_rate: share of generated sentences the language gives probability zero;
* true_logprob: mean exact log-probability (nats) of the valid generated sentences;
* cross_entropy: mean model NLL (nats per sentence, EOS included) of real test sentences;
* true_entropy: mean exact -log p_true of the same sentences (a Monte Carlo estimate of H);
* kl_true_model: mean over test sentences x ~ p_true of log p_true(x) - log q(x), an unbiased
  Monte Carlo estimate of KL(true || model) in nats per sentence, with its standard error
  (``kl_true_model@se``) and normal 95% interval (``@low``, ``@high``) over test sentences.
  It needs q(x) to be the model's probability of the whole sentence: the word vocabulary is
  the language's lexicon (no [UNK]), and a test sentence cut by the context length is an
  error, not a silently shorter sentence;
* tail_coverage: share of the lexicon's rare words (least expected ``rare_fraction``) that
  appear at least once in the samples.
"""

from __future__ import annotations

import numpy as np

from ouroboros.metrics.perplexity import test_nll
from ouroboros.metrics.signature import EvalContext, MetricValue

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 3  # 3: the evaluation context changed (no value of this module did)


def ground_truth(ctx: EvalContext) -> list[MetricValue]:
    """All ground-truth measures; needs a data source with a ground-truth language."""
    if ctx.truth is None:
        raise ValueError("metric 'ground-truth' needs the built-in grammar data source")
    truth, seed, n_gen, n_test = ctx.truth, ctx.seed, len(ctx.samples), len(ctx.real_test)
    test_texts = ctx.test_texts
    # The language's own seed and version are not the evaluation's seed and metric version.
    lang = {f"language_{k}" if k in ("seed", "version") else k: v
            for k, v in truth.fingerprint().items()}
    gen_lp = truth.logprobs(ctx.samples)
    valid = np.isfinite(gen_lp)
    nll, _ = test_nll(ctx, whole=True)
    true_lp = truth.logprobs(test_texts)
    ce, h = float(nll.mean()), float(-true_lp.mean())
    gap = nll + true_lp  # log p_true(x) - log q(x) per test sentence
    kl = float(gap.mean())
    se = float(gap.std(ddof=1) / np.sqrt(n_test)) if n_test > 1 else float("nan")
    rare = truth.rare_words(ctx.options.get("rare_fraction", 0.5))
    seen = {w for t in ctx.samples for w in t.split()}
    per_sentence = {**lang, "unit": "nats/sentence"}
    on_test = {**per_sentence, "split": "real-test"}

    def value(name, x, n, params, better):
        return MetricValue(name, x, VERSION, n, seed, params, better)
    return [
        value("error_rate", float(1 - valid.mean()) if n_gen else 1.0, n_gen, lang, False),
        value("true_logprob", float(gen_lp[valid].mean()) if valid.any() else float("nan"),
              int(valid.sum()), {**per_sentence, "over": "valid generated"}, None),
        value("cross_entropy", ce, n_test, on_test, False),
        value("true_entropy", h, n_test, on_test, None),
        value("kl_true_model", kl, n_test, on_test, False),
        value("kl_true_model@se", se, n_test, {**on_test, "estimator": "sd/sqrt(n)"}, None),
        value("kl_true_model@low", kl - 1.96 * se, n_test,
              {**on_test, "interval": "normal 95% over test sentences"}, None),
        value("kl_true_model@high", kl + 1.96 * se, n_test,
              {**on_test, "interval": "normal 95% over test sentences"}, None),
        value("tail_coverage", sum(w in seen for w in rare) / len(rare), n_gen,
              {**lang, "rare_fraction": ctx.options.get("rare_fraction", 0.5),
               "rare_words": len(rare)}, True),
    ]
