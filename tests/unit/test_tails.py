"""Tail and distribution-shift metrics against hand-computed values."""

import math

import pytest

from ouroboros.metrics.tails import rare_recall, unigram_shift


def test_rare_recall_by_real_frequency_band():
    real = ["a a a a a b b c", "d e"] + ["f"] * 17   # counts: a5 b2 c1 d1 e1 f17
    samples = ["a c f", "z"]
    got = rare_recall(real, samples, 1)
    assert got == {"1": pytest.approx(1 / 3), "2-4": 0.0, "5-16": 1.0, "17+": 1.0}
    assert math.isnan(rare_recall(["x y"], ["x"], 2)["2-4"])  # no real bigram in that band


def test_unigram_kl_and_missing_mass():
    kl, missing = unigram_shift(["a a b"], ["a a b"])
    # samples smoothed add-one over {a, b}: q = (3/5, 2/5); p = (2/3, 1/3)
    assert kl == pytest.approx(2 / 3 * math.log((2 / 3) / (3 / 5))
                               + 1 / 3 * math.log((1 / 3) / (2 / 5)))
    assert missing == 0.0
    _, missing = unigram_shift(["a a b c"], ["a"])
    assert missing == pytest.approx(2 / 4)


def test_reference_perplexity_scores_an_unfinished_sample_without_eos(tiny_model):
    """A sample cut at max_new_tokens never ended: its perplexity must not include an EOS."""
    from ouroboros.config import TaskConfig
    from ouroboros.metrics.signature import EvalContext
    from ouroboros.metrics.tails import sample_perplexities
    from ouroboros.tasks.lm import LanguageModelling

    from ..conftest import lm_encoder
    model, tok, _, texts = tiny_model
    rows = [{"source": "", "target": texts[0], "finished": f} for f in (True, False)]
    ctx = EvalContext(samples=[texts[0]] * 2, real_test=[], seed=0, model=model, tokenizer=tok,
                      encoder=lm_encoder(tok), task=LanguageModelling(TaskConfig()),
                      sample_rows=rows, reference_model=model)
    done, unfinished = sample_perplexities(ctx)
    assert done != unfinished


def test_reference_perplexity_pools_tokens_so_empty_samples_do_not_decide_it(tiny_model):
    """6 empty samples of 300 moved the old mean of per-sample perplexities several-fold; the
    pooled token perplexity weighs each as its one EOS token, and the percentiles are
    those of the per-sample values."""
    import numpy as np

    from ouroboros.config import TaskConfig
    from ouroboros.metrics.signature import EvalContext
    from ouroboros.metrics.tails import reference_perplexity, sample_nll
    from ouroboros.tasks.lm import LanguageModelling

    from ..conftest import lm_encoder
    model, tok, _, texts = tiny_model
    targets = [texts[i % 40] for i in range(294)] + [""] * 6
    rows = [{"source": "", "target": t} for t in targets]
    ctx = EvalContext(samples=targets, real_test=[], seed=0, model=model, tokenizer=tok,
                      encoder=lm_encoder(tok), task=LanguageModelling(TaskConfig()),
                      sample_rows=rows, reference_model=model)
    got = {v.metric: v.value for v in reference_perplexity(ctx)}
    nll, count = sample_nll(ctx)
    assert got["reference_perplexity"] == pytest.approx(math.exp(nll.sum() / count.sum()))
    per = np.exp(nll / count)
    assert got["reference_perplexity_p99"] == pytest.approx(np.percentile(per, 99))
    assert got["reference_perplexity_median"] == pytest.approx(np.median(per))
    # the same samples without the empties: the pooled value barely moves, a mean would
    full = EvalContext(samples=targets[:294], real_test=[], seed=0, model=model, tokenizer=tok,
                       encoder=lm_encoder(tok), task=LanguageModelling(TaskConfig()),
                       sample_rows=rows[:294], reference_model=model)
    without = {v.metric: v.value for v in reference_perplexity(full)}
    assert list(count[-6:]) == [1] * 6  # an empty sample is its EOS token, weighed as one
    assert got["reference_perplexity"] < 1.2 * without["reference_perplexity"]
    assert "reference_perplexity_mean" not in got


def test_empty_rate_and_sample_words_are_always_measured():
    from ouroboros.metrics.references import sample_shape
    from ouroboros.metrics.signature import EvalContext
    rows = [{"source": "", "target": t} for t in ["a b", "", "c", "  "]]
    got = {v.metric: v for v in sample_shape(EvalContext(samples=[], real_test=[], seed=0,
                                                         sample_rows=rows))}
    assert got["empty_rate"].value == 0.5 and got["empty_rate"].higher_is_better is False
    assert got["sample_words"].value == pytest.approx(3 / 4)
    assert got["unfinished_rate"].value == 0.0
