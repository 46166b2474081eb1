"""Curation steps. Each takes the candidates still in play and returns them, each scored and
with a decision recorded on the row itself (``scores[step]``, ``decisions``): the lineage of
every sample says what it was given and why it was kept or dropped.

* ``dedup``: exact duplicates, then near duplicates whose word 3-gram Jaccard similarity
  reaches ``threshold`` (candidates found by MinHash banding, then checked exactly).
* ``length``: keep ``min_words`` <= words <= ``max_words``.
* ``repetition``: keep samples whose within-sample 4-gram repetition rate <= ``max_rate``.
* ``verifier``: the ground-truth language's exact validity, made imperfect on purpose: a valid
  sample is rejected with probability ``false_reject``, an invalid one accepted with
  ``false_accept`` (Feng et al. 2024: verification prevents collapse, even imperfect).
* ``detector``: a classifier (n-gram or small transformer) cross-fitted to tell real from
  synthetic text: each candidate's P(real), its human-likeness, comes from a model that did
  not train on it (the candidates are the detector's own training rows); the out-of-fold AUC
  over all rows and the fold count are reported. Human-likeness is used to ``filter`` (keep
  the most human-like ``keep_fraction``), ``order`` (most human-like first, for ordered
  training) or ``resample`` (importance resampling with weights P(real)/P(synthetic),
  Drayson et al. 2025).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ouroboros.metrics.diversity import ngrams, repetition_rate


@dataclass
class CurationContext:
    """What curation steps may use."""

    real: list[dict]                       # the real training examples
    rng: np.random.Generator
    task: Any
    truth: Any = None                      # GroundTruthLanguage, for the verifier
    score_quality: Any = None              # rows -> per-row log-likelihood per token under
                                           # the frozen generation-0 model (quality step)
    info: dict[str, Any] = field(default_factory=dict)  # per-step reports (AUC, counts, ...)
    previous: list[dict] = field(default_factory=list)  # kept in earlier refill rounds (dedup
                                                        # compares new candidates with them)


def _decide(rows: list[dict], keep: list[bool], step: str, reason: str) -> list[dict]:
    """Record each row's decision and return the kept ones."""
    for row, k in zip(rows, keep, strict=True):
        row.setdefault("decisions", []).append({"step": step, "kept": bool(k),
                                                **({} if k else {"reason": reason})})
    return [r for r, k in zip(rows, keep, strict=True) if k]


def _text(ctx: CurationContext, row: dict) -> str:
    return ctx.task.text(row)


# -- dedup ------------------------------------------------------------------------------------

def _shingles(text: str) -> set[tuple[str, ...]]:
    words = text.split()
    return set(ngrams(words, 3)) if len(words) >= 3 else {tuple(words)}


def _minhash(shingles: set, hashes: int = 64) -> np.ndarray:
    """MinHash signature: for each of ``hashes`` seeded hash functions, the minimum."""
    values = np.array([int.from_bytes(hashlib.blake2b(" ".join(s).encode(), digest_size=8)
                                      .digest(), "little") for s in shingles], dtype=np.uint64)
    mult = np.arange(1, 2 * hashes, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return (values[None, :] * mult[:, None] + mult[:, None]).min(axis=1)


def dedup(rows: list[dict], ctx: CurationContext, threshold: float = 0.8) -> list[dict]:
    """Drop exact duplicates, then near duplicates (Jaccard of word 3-grams >= threshold)."""
    keep, seen_exact = [], set()
    everything = ctx.previous + rows  # earlier rounds' survivors are already kept
    shingles = [_shingles(_text(ctx, r)) for r in everything]
    signatures = [_minhash(s) for s in shingles]
    buckets: dict[tuple, list[int]] = {}
    for i in range(len(ctx.previous)):
        seen_exact.add(_text(ctx, ctx.previous[i]))
        for b in range(16):
            buckets.setdefault((b, signatures[i][4 * b:4 * b + 4].tobytes()), []).append(i)
    for i, row in enumerate(everything):
        if i < len(ctx.previous):
            continue
        text = _text(ctx, row)
        if text in seen_exact:
            keep.append(False)
            row.setdefault("scores", {})["dedup"] = 1.0
            continue
        seen_exact.add(text)
        bands = [(b, signatures[i][4 * b:4 * b + 4].tobytes()) for b in range(16)]
        candidates = {j for band in bands for j in buckets.get(band, [])}
        best = max((len(shingles[i] & shingles[j]) / len(shingles[i] | shingles[j])
                    for j in candidates), default=0.0)
        row.setdefault("scores", {})["dedup"] = best
        duplicate = best >= threshold
        keep.append(not duplicate)
        if not duplicate:
            for band in bands:
                buckets.setdefault(band, []).append(i)
    ctx.info["dedup"] = {"dropped": len(rows) - sum(keep)}
    return _decide(rows, keep, "dedup", f"duplicate (Jaccard >= {threshold})")


# -- heuristic filters ------------------------------------------------------------------------

def finished(rows: list[dict], ctx: CurationContext) -> list[dict]:
    """Keep only samples that ended (EOS) before ``generation.max_new_tokens`` cut them.
    Without this step an unfinished sample is kept and learned without EOS."""
    keep = [r.get("finished", True) is not False for r in rows]
    ctx.info["finished"] = {"dropped": len(rows) - sum(keep)}
    return _decide(rows, keep, "finished", "cut at max_new_tokens before it ended")


def length(rows: list[dict], ctx: CurationContext, min_words: int = 1,
           max_words: int | None = None) -> list[dict]:
    """Keep samples whose target has between ``min_words`` and ``max_words`` words."""
    counts = [len(r["target"].split()) for r in rows]
    keep = [c >= min_words and (max_words is None or c <= max_words) for c in counts]
    for r, c in zip(rows, counts, strict=True):
        r.setdefault("scores", {})["length"] = c
    return _decide(rows, keep, "length", f"outside {min_words}..{max_words} words")


def repetition(rows: list[dict], ctx: CurationContext, max_rate: float = 0.2) -> list[dict]:
    """Keep samples whose within-sample 4-gram repetition rate is at most ``max_rate``."""
    rates = [repetition_rate([r["target"]]) for r in rows]
    for r, x in zip(rows, rates, strict=True):
        r.setdefault("scores", {})["repetition"] = x
    return _decide(rows, [x <= max_rate for x in rates], "repetition",
                   f"repetition rate above {max_rate}")


# -- verifier ---------------------------------------------------------------------------------

def verifier(rows: list[dict], ctx: CurationContext, false_accept: float = 0.0,
             false_reject: float = 0.0) -> list[dict]:
    """Exact validity, with the configured error rates: under the ground-truth language, a
    grammatical sentence; on a task with exact answers (arithmetic, gsm8k, classification),
    an answer equal to the real answer of the problem that prompted the sample, which makes
    curation with it verified self-training (STaR, ReST-EM; Feng et al. 2024)."""
    valid = np.array(_valid(rows, ctx), dtype=bool)
    u = ctx.rng.random(len(rows))
    accept = np.where(valid, u >= false_reject, u < false_accept)
    for r, v in zip(rows, valid, strict=True):
        r.setdefault("scores", {})["verifier"] = float(v)
    ctx.info["verifier"] = {"valid": int(valid.sum()), "accepted": int(accept.sum()),
                            "accepted_invalid": int((accept & ~valid).sum()),
                            "rejected_valid": int((~accept & valid).sum())}
    return _decide(rows, list(accept), "verifier", "rejected by the verifier")


def _valid(rows: list[dict], ctx: CurationContext) -> list[bool]:
    """Whether each row is right, exactly (the verifier's truth)."""
    if ctx.truth is not None:
        return list(np.isfinite(ctx.truth.logprobs([_text(ctx, r) for r in rows])))
    check = getattr(ctx.task, "check", None)
    if check is None:
        raise ValueError("curation step 'verifier' needs exact validity: the grammar data "
                         "source or a task with exact answers; other real tasks need a "
                         "reference- or model-based verifier")
    answers = {e["id"]: e["target"] for e in ctx.real}
    return [r.get("prompted_by") in answers and check(r["target"], answers[r["prompted_by"]])[1]
            for r in rows]


def reference(rows: list[dict], ctx: CurationContext, threshold: float = 0.3) -> list[dict]:
    """A reference-based verifier for real tasks: chrF (sacrebleu, 0-1) of each synthetic
    target against the real target of the example that prompted it (for lm continuations: the
    real text after the prefix); keep those at or above ``threshold``."""
    from sacrebleu.metrics import CHRF
    real = {e["id"]: e for e in ctx.real}
    chrf = CHRF()
    scores = []
    for r in rows:
        ref = real.get(r.get("prompted_by"))
        if ref is None:
            raise ValueError("curation step 'reference' needs samples prompted by real examples "
                             "(summarization, translation, or lm with prompt: real-prefix)")
        text = ref["target"]
        if not ctx.task.conditional:  # a continuation: compare with the real continuation
            text = " ".join(text.split()[len(r["source"].split()):])
        scores.append(chrf.sentence_score(r["target"], [text]).score / 100)
    for r, x in zip(rows, scores, strict=True):
        r.setdefault("scores", {})["reference"] = x
    return _decide(rows, [x >= threshold for x in scores], "reference",
                   f"chrF to the real target below {threshold}")


def model_verifier(rows: list[dict], ctx: CurationContext, classifier: str = "ngram",
                   threshold: float = 0.5, model: str | None = None,
                   revision: str | None = None) -> list[dict]:
    """A model-based verifier for real tasks: P(acceptable) of each candidate, kept at or above
    ``threshold``. Summarization/translation: is the target a right answer to its source? The
    classifier learns it from the real training pairs against wrong ones (another example's
    target, or the right one made disfluent). lm: is the text fluent (real vs disfluent real
    text)? ``model``: a Hugging Face sequence classifier (name or folder) used as it is
    instead, its last label meaning acceptable.

    A trained classifier is cross-fitted (``classifiers.cross_fit``): its AUC in the record is
    out of fold over every real pair and wrong answer, the folds grouped by real example (a
    pair and its wrong answer on one side). The candidates are not its training rows, so a
    model fitted on all of them scores them, except a candidate that duplicates a training
    input (lm: a generated text that copies a real training text, which small models do
    often; a translation identical to its real pair): it gets that input's out-of-fold score
    (counted as ``scored_out_of_fold``), or the verifier would pass copies of what it learned
    as acceptable more easily than equally fluent new text and so favour regurgitation. The
    AUC is for sources no model saw; candidates answer training sources, whose right answers
    the final model did see."""
    pairs = ctx.task.conditional
    candidates = [(r["source"], r["target"]) if pairs else _text(ctx, r) for r in rows]
    if model is not None:
        scores = _hf_scores(model, candidates, pairs, revision)
        pinned = {"revision": revision} if revision else {}
        ctx.info["model-verifier"] = {"model": model, **pinned}
    else:
        scores = _trained_verifier(candidates, ctx, classifier, pairs)
    for r, x in zip(rows, scores, strict=True):
        r.setdefault("scores", {})["model_verifier"] = float(x)
    ctx.info["model-verifier"]["accepted"] = int((np.asarray(scores) >= threshold).sum())
    return _decide(rows, [x >= threshold for x in scores], "model-verifier",
                   f"P(acceptable) below {threshold}")


def _verifier_examples(ctx: CurationContext, pairs: bool) -> tuple[list, np.ndarray, np.ndarray]:
    """(inputs, labels, groups) to train a verifier: the real examples (1) and one wrong answer
    made from each (0); wrong answer i is in the group of real example i."""
    from ouroboros.curation.classifiers import negative_pairs
    real = [e for e in ctx.real if e["target"].strip()]
    if len(real) < 8:
        raise ValueError("curation step 'model-verifier' needs at least 8 real examples "
                         "to learn from")
    if pairs:
        positives = [(e["source"], e["target"]) for e in real]
        negatives = negative_pairs(real, ctx.rng, mismatch=True)
    else:
        positives = [_text(ctx, e) for e in real]
        negatives = [t for _, t in negative_pairs([{"source": "", "target": t}
                                                   for t in positives], ctx.rng, mismatch=False)]
    labels = np.array([1] * len(positives) + [0] * len(negatives))
    return positives + negatives, labels, np.r_[np.arange(len(real)), np.arange(len(real))]


def _trained_verifier(candidates: list, ctx: CurationContext, classifier: str,
                      pairs: bool) -> np.ndarray:
    """P(acceptable) of each candidate from a cross-fitted classifier; its report in ctx.info."""
    from ouroboros.curation.classifiers import cross_fit
    inputs, labels, groups = _verifier_examples(ctx, pairs)
    fitted = cross_fit(classifier, inputs, labels, ctx.rng, groups=groups, pairs=pairs)
    scores = fitted.predict(candidates)
    ctx.info["model-verifier"] = {
        "auc": fitted.auc, "folds": fitted.folds, "classifier": classifier,
        "examples": len(labels), "scored_out_of_fold": fitted.seen_count(candidates)}
    return scores


def _hf_scores(name: str, inputs: list, pairs: bool, revision: str | None = None,
               batch_size: int = 32) -> np.ndarray:
    """P(last label) of each input (text, or (source, target) pair) under an HF classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(name, revision=revision)
    model = AutoModelForSequenceClassification.from_pretrained(name, revision=revision).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            enc = (tok([a for a, _ in chunk], [b for _, b in chunk], truncation=True,
                       padding=True, return_tensors="pt") if pairs else
                   tok(chunk, truncation=True, padding=True, return_tensors="pt"))
            out.append(torch.softmax(model(**enc).logits.float(), -1)[:, -1].numpy())
    return np.concatenate(out) if out else np.zeros(0)


# -- detector ---------------------------------------------------------------------------------

def detector(rows: list[dict], ctx: CurationContext, mode: str = "filter",
             keep_fraction: float = 0.5, classifier: str = "ngram") -> list[dict]:
    """Human-likeness P(real) from a real-vs-synthetic classifier; filter, order or resample.

    The classifier trains on the real texts and these candidates, so each candidate's score is
    out of fold (``classifiers.cross_fit``, folds grouped by duplicate text): a model scoring
    the rows it learned as synthetic would rank the rows it happened not to see first."""
    from ouroboros.curation.classifiers import cross_fit
    real = [_text(ctx, r) for r in ctx.real]
    synth = [_text(ctx, r) for r in rows]
    texts, labels = real + synth, np.array([1] * len(real) + [0] * len(synth))
    if len(set(labels.tolist())) < 2 or min(len(real), len(synth)) < 4:
        raise ValueError("curation step 'detector' needs real and synthetic examples (at "
                         "least 4 of each) to train on")
    fitted = cross_fit(classifier, texts, labels, ctx.rng)
    human = fitted.scores[len(real):]  # the candidates are training rows: out-of-fold scores
    for r, h in zip(rows, human, strict=True):
        r.setdefault("scores", {})["human_likeness"] = float(h)
    ctx.info["detector"] = {"auc": fitted.auc, "folds": fitted.folds, "mode": mode,
                            "classifier": classifier, "examples": len(texts)}
    if mode == "order":
        ranked = [rows[i] for i in np.argsort(-human, kind="stable")]
        return _decide(ranked, [True] * len(ranked), "detector", "")
    if mode == "resample":
        w = human / np.clip(1 - human, 1e-6, None)
        picks = ctx.rng.choice(len(rows), size=len(rows), replace=True, p=w / w.sum())
        counts = np.bincount(picks, minlength=len(rows))
        for r, c in zip(rows, counts, strict=True):
            r["scores"]["resampled_copies"] = int(c)
        _decide(rows, list(counts > 0), "detector", "not drawn by importance resampling")
        return [dict(r) for r, c in zip(rows, counts, strict=True) for _ in range(c)]
    k = max(1, int(round(keep_fraction * len(rows))))
    top = set(np.argsort(-human, kind="stable")[:k].tolist())
    return _decide(rows, [i in top for i in range(len(rows))], "detector",
                   f"not among the {keep_fraction:.0%} most human-like")


# -- quality and best-of-N --------------------------------------------------------------------

def quality(rows: list[dict], ctx: CurationContext, mode: str = "filter",
            keep_fraction: float = 0.5) -> list[dict]:
    """Quality = mean log-likelihood per token under the frozen generation-0 model (higher is
    better); keep the best ``keep_fraction``, or order best first."""
    if ctx.score_quality is None:
        raise ValueError("curation step 'quality' needs the generation-0 model")
    scores = np.asarray(ctx.score_quality(rows))
    for r, q in zip(rows, scores, strict=True):
        r.setdefault("scores", {})["quality"] = float(q)
    ranked = np.argsort(-scores, kind="stable")
    if mode == "order":
        return _decide([rows[i] for i in ranked], [True] * len(rows), "quality", "")
    top = set(ranked[:max(1, int(round(keep_fraction * len(rows))))].tolist())
    return _decide(rows, [i in top for i in range(len(rows))], "quality",
                   f"not among the {keep_fraction:.0%} best by quality")


def best_of_n(rows: list[dict], ctx: CurationContext, scorer: str = "true_logprob") -> list[dict]:
    """Of the candidates answering the same request (``generation.candidates``), keep the best
    by ``scorer``: true_logprob (exact, the ground-truth language), or a score an earlier step
    gave (verifier, reference, model_verifier, human_likeness, quality)."""
    if scorer == "true_logprob":
        if ctx.truth is None:
            raise ValueError("best-of-n scorer true_logprob needs the grammar data source")
        for r, lp in zip(rows, ctx.truth.logprobs([_text(ctx, r) for r in rows]), strict=True):
            r.setdefault("scores", {})["true_logprob"] = float(lp)
    missing = [r["id"] for r in rows if scorer not in r.get("scores", {})]
    if missing:
        raise ValueError(f"best-of-n scorer '{scorer}' has no score for {len(missing)} "
                         f"candidates: put the step that gives it ({scorer}) before best-of-n")
    best: dict[Any, int] = {}
    for i, r in enumerate(rows):
        key = r.get("request", r["id"])
        if key not in best or r["scores"][scorer] > rows[best[key]]["scores"][scorer]:
            best[key] = i
    chosen = set(best.values())
    ctx.info["best-of-n"] = {"requests": len(best), "candidates": len(rows), "scorer": scorer}
    return _decide(rows, [i in chosen for i in range(len(rows))], "best-of-n",
                   f"a better candidate by {scorer} answered the same request")


STEPS = {"finished": finished,
         "dedup": dedup, "length": length, "repetition": repetition, "verifier": verifier,
         "reference": reference, "model-verifier": model_verifier, "detector": detector,
         "quality": quality, "best-of-n": best_of_n}


def curate(rows: list[dict], steps: list, ctx: CurationContext,
           allow_empty: bool = False) -> tuple[list[dict], list[dict]]:
    """(kept rows in order, every row with its scores and decisions) after all steps.

    A step that would leave nothing is an error naming the step, never an empty training set
    (``allow_empty``: a refill round may come back empty; the caller checks the total).
    """
    alive = rows
    for step in steps:
        params = step.model_dump(exclude={"name"}, exclude_none=True)
        before = len(alive)
        alive = STEPS[step.name](alive, ctx, **params) if alive else []
        if not alive and allow_empty:
            continue
        if not alive:
            raise ValueError(f"curation step '{step.name}' left no data: it dropped all "
                             f"{before} candidates (see its settings {params})")
    return alive, rows
