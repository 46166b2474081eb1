"""Self-BLEU: the same numbers as the naive sacrebleu definition."""

import numpy as np
import pytest
import sacrebleu

from ouroboros.data.grammar import GroundTruthLanguage
from ouroboros.metrics.selfbleu import self_bleu, self_bleu_scores


def naive(texts):
    return np.array([sacrebleu.sentence_bleu(h, texts[:i] + texts[i + 1:]).score
                     for i, h in enumerate(texts)])


@pytest.mark.parametrize("seed", [0, 1])
def test_exactly_the_naive_definition(seed):
    texts = GroundTruthLanguage().sample(120, np.random.default_rng(seed))
    # Edge cases: duplicates (shared maximal counts), empty and one-word texts, a long outlier,
    # lengths held by one text only, repeated n-grams inside one text.
    texts += ["the dog runs .", "the dog runs .", "", "a", "the the the the the .",
              " ".join(["word"] * 40), "Mixed CASE, punctuation!"]
    assert np.array_equal(self_bleu_scores(texts), naive(texts))


def test_identical_texts_score_100_and_degenerate_sets():
    assert self_bleu(["a b c d e"] * 3) == pytest.approx(100.0)
    assert np.isnan(self_bleu(["only one"]))
