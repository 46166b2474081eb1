"""Self-BLEU, exactly as the naive definition with sacrebleu, in time linear in the n-grams.

The naive definition: the mean over samples i of ``sacrebleu.sentence_bleu(s_i, others)``,
every other sample a reference (13a tokenization, exp smoothing, effective order). That is
quadratic: each of N calls re-extracts N-1 references. Here each sample's n-grams are counted
once; for every n-gram we keep its two largest counts across samples (and which sample has the
largest), which gives the clipped match count against "all samples but i" in O(1); the closest
reference length comes from a sorted table of lengths. The statistics go through sacrebleu's own
scoring function, so the formula (brevity penalty, smoothing, effective order) is sacrebleu's.
"""

from __future__ import annotations

import bisect
from collections import Counter

import numpy as np
from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams

MAX_ORDER = 4


def _closest_other_length(length: int, values: list[int], counts: Counter) -> int:
    """sacrebleu's closest reference length for a hypothesis of ``length`` words when the
    references are all texts but itself: ``values`` are the distinct lengths (sorted), ``counts``
    how many texts have each. Ties go to the shorter length (``BLEU._get_closest_ref_len``)."""
    if counts[length] > 1:  # another text has the same length
        return length
    i = bisect.bisect_left(values, length)  # values[i] == length, held by this text alone
    neighbours = [values[j] for j in (i - 1, i + 1) if 0 <= j < len(values)]
    return min(neighbours, key=lambda v: (abs(length - v), v))


def self_bleu_scores(texts: list[str]) -> np.ndarray:
    """Sentence BLEU of each text against all the others (sacrebleu's numbers)."""
    if len(texts) < 2:
        return np.full(len(texts), np.nan)
    metric = BLEU(effective_order=True)  # what sacrebleu.sentence_bleu uses
    grams, lengths = zip(*(extract_all_word_ngrams(metric._preprocess_segment(t), 1, MAX_ORDER)
                           for t in texts), strict=True)
    best: dict[tuple, tuple[int, int, int]] = {}  # n-gram -> (max, owner of max, 2nd max)
    for i, counter in enumerate(grams):
        for gram, c in counter.items():
            top = best.get(gram)
            if top is None:
                best[gram] = (c, i, 0)
            elif c > top[0]:
                best[gram] = (c, i, top[0])
            elif c > top[2]:
                best[gram] = (top[0], top[1], c)
    length_counts = Counter(lengths)
    values = sorted(length_counts)
    scores = np.empty(len(texts))
    for i, counter in enumerate(grams):
        correct, total = [0] * MAX_ORDER, [0] * MAX_ORDER
        for gram, c in counter.items():
            n = len(gram) - 1
            total[n] += c
            top, owner, second = best[gram]
            correct[n] += min(c, second if owner == i else top)
        ref_len = _closest_other_length(lengths[i], values, length_counts)
        stats = [lengths[i], ref_len] + correct + total
        scores[i] = metric._compute_score_from_stats(stats).score
    return scores


def self_bleu(texts: list[str]) -> float:
    """Mean self-BLEU of a set of texts (0-100; higher = less diverse)."""
    return float(np.mean(self_bleu_scores(texts)))
