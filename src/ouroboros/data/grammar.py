"""The built-in ground-truth language: a seeded probabilistic automaton over English words.

Every sentence has an exact probability (zero for ungrammatical ones), so collapse can be
measured exactly: the error rate of generated text, its true log-probability, and the
cross-entropy of a model against the true entropy. The structure is a weighted finite-state
automaton whose arcs emit a word class (determiner, noun, verb, ...); the class then emits a
word. Open classes follow a Zipf law with a long tail; which word gets which rank is decided by
the language seed. Number agreement (``the dog runs`` / ``the dogs run``) is tracked in the
states. A few surface forms belong to two classes (``the``, ``it``, ``sheep``), so scoring uses
the forward algorithm, which sums over every path and stays exact under that ambiguity.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ouroboros.data import lexicon as lx

VERSION = 1
STOP = "<stop>"
START = "start"
END_TOKEN = "."


def _zipf(words: list[str], exponent: float, rng: np.random.Generator,
          size: int | None = None) -> dict[str, float]:
    """Word -> probability with p(rank r) proportional to r^-exponent, ranks drawn by ``rng``;
    with ``size``, a seeded choice of that many of the words (a smaller lexicon, same law)."""
    if size is not None and size < len(words):
        words = [words[i] for i in sorted(rng.choice(len(words), size, replace=False))]
    order = rng.permutation(len(words))
    weights = np.arange(1, len(words) + 1, dtype=np.float64) ** -exponent
    weights /= weights.sum()
    return {words[i]: float(w) for i, w in zip(order, weights, strict=True)}


def _word_classes(seed: int, exponent: float,
                  size: int | None = None) -> dict[str, dict[str, float]]:
    """Every word class of the language with its word distribution (open classes of at most
    ``size`` words each; None: every word of the lexicon)."""
    rng = np.random.default_rng([VERSION, seed])
    nouns = _zipf(lx.unique(lx.NOUNS), exponent, rng, size)
    intransitive = _zipf(lx.unique(lx.INTRANSITIVE_VERBS), exponent, rng, size)
    transitive = _zipf(lx.unique(lx.TRANSITIVE_VERBS), exponent, rng, size)
    return {
        "det_sg": dict(lx.DET_SINGULAR),
        "det_pl": dict(lx.DET_PLURAL),
        "noun_sg": nouns,
        "noun_pl": {lx.plural(w): p for w, p in nouns.items()},
        "adj": _zipf(lx.unique(lx.ADJECTIVES), exponent, rng, size),
        "name": _zipf(lx.unique(lx.NAMES), exponent, rng, size),
        "pron_sg": dict(lx.PRONOUN_SUBJ_SINGULAR),
        "pron_pl": dict(lx.PRONOUN_SUBJ_PLURAL),
        "pron_obj": dict(lx.PRONOUN_OBJ),
        "vi_sg": {lx.third_person(w): p for w, p in intransitive.items()},
        "vi_pl": intransitive,
        "vt_sg": {lx.third_person(w): p for w, p in transitive.items()},
        "vt_pl": transitive,
        "adv": _zipf(lx.unique(lx.ADVERBS), exponent, rng, size),
        "prep": _zipf(lx.unique(lx.PREPOSITIONS), exponent, rng, size),
        "conj": dict(lx.CONJUNCTIONS),
        "end": {END_TOKEN: 1.0},
    }


def _noun_phrase(arcs: dict, prefix: str, then: str, adjective_p: float) -> None:
    """Arcs for ``det (adj (adj)) noun`` of either number, continuing at state ``then``.

    ``then`` may contain ``{n}``, filled with the phrase's own number (for subjects, whose
    number the verb must agree with).
    """
    for n, weight in (("sg", 0.62), ("pl", 0.38)):
        arcs[prefix].append((f"det_{n}", f"{prefix}_det_{n}", weight))
        arcs[f"{prefix}_det_{n}"] += [("adj", f"{prefix}_adj_{n}", adjective_p),
                                      (f"noun_{n}", then.format(n=n), 1 - adjective_p)]
        arcs[f"{prefix}_adj_{n}"] += [("adj", f"{prefix}_adj2_{n}", 0.15),
                                      (f"noun_{n}", then.format(n=n), 0.85)]
        arcs[f"{prefix}_adj2_{n}"].append((f"noun_{n}", then.format(n=n), 1.0))


def _structure() -> dict[str, list[tuple[str | None, str, float]]]:
    """State -> arcs (class or None for an empty move, next state, relative weight)."""
    arcs: dict[str, list] = defaultdict(list)
    # Subject: a noun phrase, a name or a pronoun; the verb agrees with its number.
    arcs[START] += [(None, "subj", 0.7), ("name", "vp_sg", 0.14),
                    ("pron_sg", "vp_sg", 0.08), ("pron_pl", "vp_pl", 0.08)]
    _noun_phrase(arcs, "subj", "subj_noun_{n}", adjective_p=0.3)
    for n in ("sg", "pl"):
        # An optional prepositional phrase inside the subject: "the dog near the river runs".
        arcs[f"subj_noun_{n}"] += [("prep", f"subj_pp_{n}", 0.12), (None, f"vp_{n}", 0.88)]
        arcs[f"subj_pp_{n}"] += [(None, f"subj_pp_np_{n}", 0.8), ("name", f"vp_{n}", 0.2)]
        _noun_phrase(arcs, f"subj_pp_np_{n}", f"vp_{n}", adjective_p=0.2)
        arcs[f"vp_{n}"] += [("vi_" + n, "after_verb", 0.4), ("vt_" + n, "object", 0.6)]
    arcs["object"] += [(None, "obj", 0.72), ("name", "after_verb", 0.14),
                       ("pron_obj", "after_verb", 0.14)]
    _noun_phrase(arcs, "obj", "after_verb", adjective_p=0.3)
    # The tail: adverb, prepositional phrases, a coordinated clause, or the full stop.
    arcs["after_verb"] += [("adv", "after_adv", 0.18), ("prep", "tail_pp", 0.2),
                           ("conj", START, 0.12), ("end", STOP, 0.5)]
    arcs["after_adv"] += [("prep", "tail_pp", 0.2), ("conj", START, 0.1), ("end", STOP, 0.7)]
    arcs["tail_pp"] += [(None, "tail_np", 0.85), ("name", "after_pp", 0.15)]
    _noun_phrase(arcs, "tail_np", "after_pp", adjective_p=0.25)
    arcs["after_pp"] += [("prep", "tail_pp", 0.1), ("conj", START, 0.1), ("end", STOP, 0.8)]
    return arcs


def _compile(raw: dict[str, list]) -> dict[str, list[tuple[str, str, float]]]:
    """Normalise weights per state and remove empty moves (they form no cycle here)."""
    normalised = {}
    for state, out in raw.items():
        total = sum(w for _, _, w in out)
        normalised[state] = [(label, dst, w / total) for label, dst, w in out]

    def expand(state: str, scale: float) -> list[tuple[str, str, float]]:
        result = []
        for label, dst, p in normalised[state]:
            if label is None:
                result += expand(dst, scale * p)
            else:
                result.append((label, dst, scale * p))
        return result

    return {state: expand(state, 1.0) for state in normalised}


@dataclass(frozen=True)
class LanguageSpec:
    """What defines a ground-truth language: its structure version, seed and Zipf exponent."""

    seed: int = 0
    zipf_exponent: float = 1.1
    version: int = VERSION
    open_class_size: int | None = None  # most words per open class; None: the whole lexicon


class GroundTruthLanguage:
    """A seeded English-like language with exact sentence probabilities."""

    def __init__(self, spec: LanguageSpec | None = None) -> None:
        self.spec = spec or LanguageSpec()
        if self.spec.version != VERSION:
            raise ValueError(f"language version {self.spec.version} is not available; "
                             f"this ouroboros has version {VERSION}")
        self.classes = _word_classes(self.spec.seed, self.spec.zipf_exponent,
                                     self.spec.open_class_size)
        self.arcs = _compile(_structure())
        # Scoring tables: word -> [(class, log p(word | class))], (state, class) -> arcs.
        self._word_classes: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for name, words in self.classes.items():
            for word, p in words.items():
                self._word_classes[word].append((name, p))
        self._by_class: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
        for state, out in self.arcs.items():
            for label, dst, p in out:
                self._by_class[(state, label)].append((dst, p))
        self._sampling = self._sampling_tables()

    # -- sampling -------------------------------------------------------------------------
    def _sampling_tables(self) -> dict:
        """Cumulative tables for inverse-CDF sampling of arcs and words."""
        arcs = {s: (np.cumsum([p for _, _, p in out]), out) for s, out in self.arcs.items()}
        words = {c: (np.cumsum(list(w.values())), list(w)) for c, w in self.classes.items()}
        return {"arcs": arcs, "words": words}

    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        """``n`` sentences drawn from the language, words separated by single spaces."""
        return [self._sample_one(rng) for _ in range(n)]

    def _sample_one(self, rng: np.random.Generator) -> str:
        arcs, words = self._sampling["arcs"], self._sampling["words"]
        state, out = START, []
        while state != STOP:
            cdf, options = arcs[state]
            i = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)
            label, state, _ = options[i]
            wcdf, wlist = words[label]
            j = min(int(np.searchsorted(wcdf, rng.random() * wcdf[-1], side="right")),
                    len(wcdf) - 1)
            out.append(wlist[j])
        return " ".join(out)

    # -- scoring --------------------------------------------------------------------------
    def logprob(self, sentence: str) -> float:
        """Exact natural-log probability of a sentence; ``-inf`` if the language cannot make it."""
        alpha, log_scale = {START: 1.0}, 0.0
        for word in sentence.split():
            options = self._word_classes.get(word)
            if not options:
                return -math.inf
            new: dict[str, float] = defaultdict(float)
            for state, a in alpha.items():
                for label, pw in options:
                    for dst, p in self._by_class.get((state, label), ()):
                        new[dst] += a * p * pw
            total = sum(new.values())
            if total == 0.0:
                return -math.inf
            # Rescale each step so long sentences do not underflow; the log keeps the mass.
            log_scale += math.log(total)
            alpha = {s: v / total for s, v in new.items()}
        final = alpha.get(STOP, 0.0)
        return log_scale + math.log(final) if final > 0 else -math.inf

    def step(self, alpha: dict[str, float], word: str) -> tuple[dict[str, float], float]:
        """One forward step: (the normalised state distribution after ``word``, p(word | the
        prefix that led to ``alpha``)); p = 0 and an empty state if the word cannot follow."""
        new: dict[str, float] = defaultdict(float)
        for state, a in alpha.items():
            for label, pw in self._word_classes.get(word, ()):
                for dst, p in self._by_class.get((state, label), ()):
                    new[dst] += a * p * pw
        total = sum(new.values())
        return ({s: v / total for s, v in new.items()} if total > 0 else {}), total

    def next_words(self, alpha: dict[str, float]) -> dict[str | None, float]:
        """The exact distribution of the next word given a normalised state distribution
        (``None``: the sentence ends here). Chaining ``step`` and this gives every sentence
        its exact probability, so the language can stand in for a model."""
        out: dict[str | None, float] = defaultdict(float)
        for state, a in alpha.items():
            if state == STOP:
                out[None] += a
                continue
            for label, _, p in self.arcs[state]:
                for word, pw in self.classes[label].items():
                    out[word] += a * p * pw
        return dict(out)

    def logprobs(self, sentences: list[str]) -> np.ndarray:
        """Exact log-probabilities of many sentences (float64, ``-inf`` for invalid ones)."""
        cache: dict[str, float] = {}
        out = np.empty(len(sentences), dtype=np.float64)
        for i, s in enumerate(sentences):
            if s not in cache:
                cache[s] = self.logprob(s)
            out[i] = cache[s]
        return out

    def is_valid(self, sentence: str) -> bool:
        """Whether the sentence has non-zero probability."""
        return self.logprob(sentence) > -math.inf

    # -- exact expectations ---------------------------------------------------------------
    @cached_property
    def expected_word_counts(self) -> dict[str, float]:
        """Expected occurrences of each word per sentence, exact (absorbing-chain visits)."""
        states = sorted(self.arcs)
        index = {s: i for i, s in enumerate(states)}
        q = np.zeros((len(states), len(states)))
        for s, out in self.arcs.items():
            for _, dst, p in out:
                if dst != STOP:
                    q[index[s], index[dst]] += p
        start = np.zeros(len(states))
        start[index[START]] = 1.0
        visits = np.linalg.solve((np.eye(len(states)) - q).T, start)
        counts: dict[str, float] = defaultdict(float)
        for s, out in self.arcs.items():
            for label, _, p in out:
                for word, pw in self.classes[label].items():
                    counts[word] += visits[index[s]] * p * pw
        return dict(counts)

    @property
    def lexicon(self) -> list[str]:
        """Every surface word of the language, most expected first."""
        counts = self.expected_word_counts
        return sorted(counts, key=lambda w: (-counts[w], w))

    def rare_words(self, fraction: float = 0.5) -> list[str]:
        """The least expected ``fraction`` of the lexicon: the long tail collapse erodes first."""
        words = self.lexicon
        return words[len(words) - int(round(fraction * len(words))):]

    def fingerprint(self) -> dict:
        """What identifies this language in stage fingerprints and metric signatures."""
        out = {"language": "ouroboros-grammar", "version": self.spec.version,
               "seed": self.spec.seed, "zipf_exponent": self.spec.zipf_exponent}
        if self.spec.open_class_size is not None:
            out["open_class_size"] = self.spec.open_class_size
        return out
