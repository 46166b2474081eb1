"""The ground-truth language: exact probabilities, validity, determinism, tail."""

import math
from collections import Counter

import numpy as np
import pytest

from ouroboros.data.grammar import GroundTruthLanguage, LanguageSpec


@pytest.fixture(scope="module")
def lang():
    return GroundTruthLanguage()


def test_samples_are_valid_and_deterministic(lang):
    a = lang.sample(300, np.random.default_rng(5))
    assert a == lang.sample(300, np.random.default_rng(5))
    assert all(s.endswith(" .") for s in a)
    assert np.isfinite(lang.logprobs(a)).all()


def test_agreement_and_word_order(lang):
    assert lang.is_valid("the dog sleeps .")
    assert lang.is_valid("the dogs sleep .")
    assert not lang.is_valid("the dogs sleeps .")
    assert not lang.is_valid("the dog sleep .")
    assert not lang.is_valid("dog the sleeps .")
    assert not lang.is_valid("the dog sleeps")  # no full stop
    assert not lang.is_valid("the zyzzyva sleeps .")  # not a word of the language
    assert lang.logprob("") == -math.inf


def test_exact_probability_matches_frequency(lang):
    # The most frequent sentence's sampled frequency must match its exact probability.
    n = 40_000
    counts = Counter(lang.sample(n, np.random.default_rng(0)))
    sentence, k = counts.most_common(1)[0]
    p = math.exp(lang.logprob(sentence))
    assert abs(k / n - p) < 4 * math.sqrt(p * (1 - p) / n)
    # Probabilities of distinct sentences can never add up to more than one.
    assert sum(math.exp(lang.logprob(s)) for s in counts) <= 1.0


def test_ambiguous_words_sum_over_paths(lang):
    # "sheep" is singular and plural: both verb forms are grammatical, each via one path.
    assert lang.is_valid("the sheep sleeps .") and lang.is_valid("the sheep sleep .")
    # "the" is in both determiner classes; its probability is the sum of both readings.
    sg = lang.classes["det_sg"]["the"]
    assert lang.classes["det_pl"]["the"] > 0 and sg > 0


def test_expected_word_counts_match_samples(lang):
    texts = lang.sample(20_000, np.random.default_rng(1))
    counts = Counter(w for t in texts for w in t.split())
    expected = lang.expected_word_counts
    assert expected["."] == pytest.approx(1.0)
    for word in lang.lexicon[:5]:
        assert counts[word] / len(texts) == pytest.approx(expected[word], rel=0.05)


def test_zipf_tail_and_seeds(lang):
    rare = lang.rare_words(0.5)
    assert len(rare) == round(len(lang.lexicon) / 2)
    counts = lang.expected_word_counts
    assert max(counts[w] for w in rare) <= min(counts[w] for w in lang.lexicon[:10])
    other = GroundTruthLanguage(LanguageSpec(seed=1))
    assert other.classes["noun_sg"] != lang.classes["noun_sg"]
    with pytest.raises(ValueError, match="version"):
        GroundTruthLanguage(LanguageSpec(version=99))
