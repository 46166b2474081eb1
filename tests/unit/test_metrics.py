"""Metrics against hand-computed values, and signatures."""

import math

import numpy as np
import pytest
import torch

from ouroboros.metrics.diversity import (
    distinct_n,
    diversity,
    mattr,
    ngram_entropy,
    repetition_rate,
    type_token_ratio,
    unigram_entropy,
    zipf_exponent,
)
from ouroboros.metrics.signature import EvalContext, MetricValue


def test_distinct_n_table():
    texts = ["a b a b", "a b c"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert distinct_n(texts, 2) == pytest.approx(3 / 5)  # ab ba ab | ab bc
    assert distinct_n(texts, 3) == pytest.approx(3 / 3)
    assert distinct_n(["a"], 2) == 0.0


def test_unigram_entropy():
    assert unigram_entropy(["a b c d"]) == pytest.approx(math.log(4))
    assert unigram_entropy(["a a a"]) == 0.0


def test_diversity_values_carry_signatures():
    values = diversity(EvalContext(samples=["a b", "a c"], real_test=[], seed=3))
    names = {v.metric: v for v in values}
    assert set(names) == {"distinct_1", "distinct_2", "distinct_3", "unigram_entropy",
                          "vocab_size", "entropy_2", "entropy_3", "mattr", "distinct_1_window",
                          "distinct_2_window", "distinct_3_window",
                          "zipf_exponent", "repetition_rate", "self_bleu"}
    assert names["vocab_size"].value == 3
    assert names["distinct_1"].signature.startswith("distinct_1|v4|n=2|seed=3|")


def test_distinct_window_is_not_raised_by_shorter_samples():
    """The same word stream cut into shorter samples: pooled distinct-2 rises (fewer bigrams
    in all), the windowed one stays, since a chunk always holds `window` bigrams."""
    from ouroboros.metrics.diversity import distinct_n_window
    rng = np.random.default_rng(0)
    words = [f"w{int(i)}" for i in rng.zipf(1.5, 6000) % 50]
    long = [" ".join(words[i:i + 12]) for i in range(0, 6000, 12)]
    short = [" ".join(words[i:i + 12][:6]) for i in range(0, 6000, 12)]
    assert distinct_n(short, 2) > distinct_n(long, 2) * 1.05
    assert distinct_n_window(short, 2, 500) == pytest.approx(
        distinct_n_window(long, 2, 500), rel=0.05)
    # hand-computed: chunks of 2 bigrams: (a b, b a) (a b, b c) -> 1.0, 1.0; the rest dropped
    assert distinct_n_window(["a b a b c", "a a"], 2, 2) == pytest.approx(1.0)
    assert distinct_n_window(["a a a"], 2, 10) == distinct_n(["a a a"], 2)


def test_signature_format():
    v = MetricValue("m", 1.0, 2, 10, 0, {"b": 1, "a": {"x": 2}})
    assert v.signature == 'm|v2|n=10|seed=0|a={"x": 2}|b=1'


def test_ground_truth_measures(tiny_model):
    from ouroboros.config import TaskConfig
    from ouroboros.metrics.groundtruth import ground_truth
    from ouroboros.metrics.perplexity import perplexity
    from ouroboros.tasks.lm import LanguageModelling

    from ..conftest import lm_encoder
    model, tok, lang, texts = tiny_model
    samples = texts[:30] + ["dog the sleeps .", "the dogs sleeps ."]
    test = lang.sample(40, np.random.default_rng(9))
    ctx = EvalContext(samples=samples, real_test=[{"source": "", "target": t} for t in test],
                      seed=0, truth=lang, model=model, tokenizer=tok, encoder=lm_encoder(tok),
                      task=LanguageModelling(TaskConfig()))
    got = {v.metric: v for v in ground_truth(ctx)}
    assert got["error_rate"].value == pytest.approx(2 / 32)
    assert got["true_logprob"].n == 30
    assert got["true_logprob"].value == pytest.approx(lang.logprobs(samples[:30]).mean())
    assert got["true_entropy"].value == pytest.approx(-lang.logprobs(test).mean())
    # cross_entropy recomputed independently: each sentence alone, no batching or padding
    # (KL against planted truths: tests/unit/test_kl.py)
    nll = []
    for t in test:
        ids = torch.tensor([[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]
                            + [tok.eos_token_id]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        nll.append(-logp.gather(1, ids[0, 1:, None]).sum().item())
    assert got["cross_entropy"].value == pytest.approx(np.mean(nll), rel=1e-5)
    rare = set(lang.rare_words(0.5))
    seen = {w for t in samples for w in t.split()}
    assert got["tail_coverage"].value == pytest.approx(len(rare & seen) / len(rare))
    ppl = {v.metric: v for v in perplexity(ctx)}["perplexity"].value
    n_tokens = sum(len(t.split()) + 1 for t in test)  # words + EOS
    assert ppl == pytest.approx(math.exp(got["cross_entropy"].value * len(test) / n_tokens))


def test_ground_truth_needs_a_language():
    from ouroboros.metrics.groundtruth import ground_truth
    with pytest.raises(ValueError, match="grammar"):
        ground_truth(EvalContext(samples=["a ."], real_test=["a ."], seed=0))


def test_ttr_and_mattr_table():
    texts = ["a b c a b c a b c", "d e f"]
    assert type_token_ratio(texts) == pytest.approx(6 / 12)
    assert mattr(texts, window=3) == pytest.approx(1.0)  # every 3-word window is distinct
    assert mattr(["a a b b"], window=2) == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert mattr(["a b a"], window=10) == pytest.approx(2 / 3)  # shorter than the window: TTR
    # MATTR does not fall with more of the same kind of text; TTR does.
    one, many = ["a b c d e f"], ["a b c d e f"] * 20
    assert mattr(many, 6) == pytest.approx(mattr(one, 6)) and type_token_ratio(many) < 0.1


def test_entropy_zipf_and_repetition():
    assert ngram_entropy(["a b a b"], 2) == pytest.approx(
        -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    zipf = [" ".join([f"w{r}"] * round(5000 / r)) for r in range(1, 200)]
    assert zipf_exponent(zipf) == pytest.approx(1.0, abs=0.02)
    assert repetition_rate(["x y x y x y"], n=2) == pytest.approx(3 / 5)
    assert repetition_rate(["a b c d e"]) == 0.0


def test_sample_side_metrics_see_only_what_was_generated_after_a_real_prefix():
    """Real-prefix lm: the real prefix is not the model's output, so lengths, diversity and
    tails of the samples leave it out (the issue: 68 words reported where 52 were generated)."""
    from ouroboros.config import TaskConfig
    from ouroboros.metrics.diversity import diversity
    from ouroboros.metrics.references import sample_shape
    from ouroboros.metrics.signature import EvalContext
    from ouroboros.tasks.lm import LanguageModelling
    task = LanguageModelling(TaskConfig())
    rows = [{"source": "the real prefix words", "target": "new words here"},
            {"source": "the real prefix words", "target": "more of them now"}]
    ctx = EvalContext(samples=[task.text(r) for r in rows], sample_rows=rows, real_test=[],
                      seed=0, task=task)
    assert next(v for v in sample_shape(ctx) if v.metric == "sample_words").value == 3.5
    distinct = next(v for v in diversity(ctx) if v.metric == "distinct_1")
    assert distinct.value == 7 / 7  # no word of the shared prefix counted
