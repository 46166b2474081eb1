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
