"""Qualitative traits of generated text (the seed study: toxicity, formality, emotion
intensity), each measured by a scorer chosen by name; every value names its scorer.

Scorers (``metrics.traits[].scorer``):

* ``vader``: emotion intensity as |compound| of VADER (Hutto & Gilbert 2014; MIT; its lexicon
  ships inside the ``vaderSentiment`` package, so it works offline). 0 = neutral, 1 = intense.
* ``classifier``: TF-IDF (word 1-2 grams) + logistic regression (``positive`` labels = 1) or
  ridge regression (``regression: true``) trained with scikit-learn on a labeled file the user
  points to (e.g. ../shared/data: Davidson et al. toxicity, Pavlick & Tetreault formality,
  GoEmotions). Trained once on 80% of the rows, its quality (AUC or R²) measured on the other
  20% and recorded; the split is grouped (``ouroboros.splits``): rows that are duplicates by
  ``duplicate_key`` (retweets, case and punctuation variants) are on one side, or the held-out
  quality would credit remembered copies. Cached as JSON (never a pickle) under
  ``$OUROBOROS_CACHE`` (default ``~/.cache/ouroboros``) keyed by the file's hash, the settings
  and ``VERSION``.
* ``hf``: a Hugging Face sequence classifier by name or folder; the probability of ``label``
  (or the single regression output).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ouroboros.atomic import write_atomic
from ouroboros.metrics.signature import EvalContext, MetricValue
from ouroboros.splits import duplicate_groups, grouped_folds

# Bump when this module's numbers change: it re-runs the evaluations that use it (and
# retrains the cached classifiers). 2: held-out split grouped by duplicate text.
VERSION = 3  # 3: a Hub model scorer loads the commit the study pinned


def cache_dir() -> Path:
    """Where trained trait classifiers are kept."""
    return Path(os.environ.get("OUROBOROS_CACHE", Path.home() / ".cache" / "ouroboros")) / "traits"


class VaderScorer:
    """Emotion intensity: |compound| of VADER, in [0, 1]."""

    def __init__(self, cfg) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        self.analyzer = SentimentIntensityAnalyzer()
        self.signature = {"scorer": "vader", "version": "vaderSentiment-3.3", "value": "|compound|"}

    def score(self, texts: list[str]) -> np.ndarray:
        return np.array([abs(self.analyzer.polarity_scores(t)["compound"]) for t in texts])


def _read_labeled(cfg) -> tuple[list[str], list[str]]:
    """(texts, labels) from a CSV/TSV file, by column name (header) or index (no header)."""
    path = Path(cfg.file)
    if not path.is_file():
        raise FileNotFoundError(f"trait '{cfg.trait}': labeled file {path} not found")
    tsv = path.suffix.lower() == ".tsv"
    with open(path, encoding="utf-8", newline="") as f:  # TSV has no quoting, as data files
        rows = list(csv.reader(f, delimiter="\t" if tsv else ",",
                               quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL))
    if cfg.header:
        head, rows = rows[0], rows[1:]
        missing = [c for c in (cfg.text, cfg.label) if str(c) not in head]
        if missing:
            raise ValueError(f"trait '{cfg.trait}': {path} has no column {missing} "
                             f"(columns: {', '.join(head)})")
        ti, li = head.index(str(cfg.text)), head.index(str(cfg.label))
    else:
        ti, li = int(cfg.text), int(cfg.label)
    rows = [r for r in rows if len(r) > max(ti, li)]
    return [r[ti] for r in rows], [r[li] for r in rows]


def labeled_problems(cfg) -> list[str]:
    """What in a classifier trait's labeled file would fail its training: a missing column,
    no row with a positive label (or none without), a regression label that is no number."""
    try:
        texts, labels = _read_labeled(cfg)
    except (ValueError, OSError, IndexError, csv.Error) as e:
        return [str(e)]
    if not texts:
        return [f"trait '{cfg.trait}': {cfg.file} has no labeled rows"]
    if cfg.regression:
        bad = next((x for x in labels if not _is_number(x)), None)
        return [] if bad is None else [f"trait '{cfg.trait}': label {bad!r} in {cfg.file} is "
                                       f"not a number (regression: true)"]
    positives = int(_targets(cfg, labels).sum())
    if positives == 0:
        seen = sorted(set(labels))[:8]
        return [f"trait '{cfg.trait}': no row of {cfg.file} has a positive label "
                f"{[str(p) for p in cfg.positive]} (labels seen: {', '.join(seen)})"]
    if positives == len(labels):
        return [f"trait '{cfg.trait}': every row of {cfg.file} is positive: nothing to learn"]
    return []


def _is_number(text: str) -> bool:
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def _targets(cfg, labels: list[str]) -> np.ndarray:
    if cfg.regression:
        return np.array([float(x) for x in labels])
    positive = {str(p) for p in cfg.positive}
    return np.array([int(any(p in positive for p in x.split(","))) for x in labels])


def held_out_rows(texts: list[str], labels: np.ndarray | None = None) -> np.ndarray:
    """Which rows measure a trait classifier's quality: a seeded 20% of the duplicate groups
    (one of 5 grouped folds), each label spread evenly when ``labels`` are classes."""
    return grouped_folds(duplicate_groups(texts), 5, np.random.default_rng(0), labels) == 0


class ClassifierScorer:
    """A TF-IDF linear model trained from a labeled file; cached as JSON."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        blob = Path(cfg.file).read_bytes() if Path(cfg.file).is_file() else b""
        settings = {**cfg.model_dump(exclude={"trait"}), "version": VERSION}
        key = hashlib.sha256(blob + json.dumps(settings, sort_keys=True).encode()).hexdigest()
        path = cache_dir() / f"{key[:24]}.json"
        self.model = json.loads(path.read_text()) if path.is_file() else self._train(path)
        self.signature = {"scorer": "classifier", "file_sha256": key[:16],
                          "held_out": self.model["held_out"],
                          "target": "regression" if cfg.regression else
                          f"P(label in {sorted(map(str, cfg.positive))})"}

    def _train(self, path: Path) -> dict:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.metrics import r2_score, roc_auc_score
        texts, labels = _read_labeled(self.cfg)
        y = _targets(self.cfg, labels)
        if not self.cfg.regression and len(set(y.tolist())) < 2:
            raise ValueError(f"trait '{self.cfg.trait}': every example has the same label; "
                             f"check 'positive'")
        held = held_out_rows(texts, None if self.cfg.regression else y)
        fit_idx, test_idx = np.flatnonzero(~held), np.flatnonzero(held)
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=50_000,
                              sublinear_tf=True)
        x_fit = vec.fit_transform([texts[i] for i in fit_idx])
        x_test = vec.transform([texts[i] for i in test_idx])
        if self.cfg.regression:
            model = Ridge(alpha=1.0).fit(x_fit, y[fit_idx])
            held_out = {"r2": round(float(r2_score(y[test_idx], model.predict(x_test))), 4),
                        "n": len(test_idx)}
            coef, intercept = model.coef_, float(model.intercept_)
        else:
            model = LogisticRegression(max_iter=2000).fit(x_fit, y[fit_idx])
            auc = roc_auc_score(y[test_idx], model.predict_proba(x_test)[:, 1])
            held_out = {"auc": round(float(auc), 4), "n": len(test_idx)}
            coef, intercept = model.coef_[0], float(model.intercept_[0])
        stored = {"vocabulary": {k: int(v) for k, v in vec.vocabulary_.items()},
                  "idf": vec.idf_.tolist(), "coef": np.asarray(coef).tolist(),
                  "intercept": intercept, "regression": self.cfg.regression,
                  "held_out": held_out, "examples": len(texts)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(stored))  # a temporary name per writer: stages race
        return stored

    def score(self, texts: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                              vocabulary=self.model["vocabulary"])
        vec.idf_ = np.array(self.model["idf"])
        z = vec.transform(texts) @ np.array(self.model["coef"]) + self.model["intercept"]
        return z if self.model["regression"] else 1 / (1 + np.exp(-z))


class HFScorer:
    """A Hugging Face sequence classifier: P(label), or its regression output."""

    def __init__(self, cfg) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            cfg.model, revision=cfg.revision).eval()
        labels = self.model.config.label2id
        if cfg.label is not None and str(cfg.label) not in labels:
            raise ValueError(f"trait '{cfg.trait}': model {cfg.model} has no label "
                             f"{cfg.label} (labels: {', '.join(labels)})")
        self.index = labels.get(str(cfg.label)) if cfg.label is not None else None
        self.signature = {"scorer": "hf", "model": cfg.model, "label": cfg.label}

    def score(self, texts: list[str]) -> np.ndarray:
        import torch
        out = []
        for start in range(0, len(texts), 64):
            batch = self.tok(texts[start:start + 64], padding=True, truncation=True,
                             max_length=256, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(**batch).logits
            if self.index is None:
                out += logits[:, 0].tolist()
            else:
                out += torch.softmax(logits, dim=-1)[:, self.index].tolist()
        return np.array(out)


SCORERS = {"vader": VaderScorer, "classifier": ClassifierScorer, "hf": HFScorer}


def traits(ctx: EvalContext) -> list[MetricValue]:
    """Mean trait score of the generated samples, per configured trait."""
    configured = ctx.options.get("trait_configs") or []
    if not configured:
        raise ValueError("metric 'traits' needs metrics.traits (see docs/metrics.md)")
    out = []
    for cfg in configured:
        scorer = SCORERS[cfg.scorer](cfg)
        scores = scorer.score(ctx.generated)
        out.append(MetricValue(f"trait_{cfg.trait}", float(np.mean(scores)), VERSION,
                               len(scores), ctx.seed, {**scorer.signature, "set": "generated"},
                               None))
    return out
