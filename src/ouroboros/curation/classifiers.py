"""Text classifiers trained inside a curation step: real vs synthetic (the detector) and
matching vs mismatched (source, target) pairs (the model-based verifier), always cross-fitted.

* ``ngram``: TF-IDF of word 1-2-grams and logistic regression (scikit-learn). For pairs, the
  features also hold every (source word, target word) pair, hashed: the model learns which
  target words go with which source words (lexical translation, copying in summaries).
* ``transformer``: a small transformer (GPT-2 blocks, last-token pooling) trained from scratch
  on a byte-level BPE vocabulary learned from the training texts; pairs are encoded as
  ``source [EOS] target [EOS]``.

``cross_fit`` cuts the inputs into K folds (seeded; duplicate inputs and given groups in one
fold, see ``ouroboros.splits``; each label spread evenly over the folds), trains K models, each
on K-1 folds, and scores every input with the model that did not train on it. Those
out-of-fold scores are what a step may rank its training rows by (the detector's candidates
are its training rows), and their ROC AUC over all inputs is the reported quality. Scoring
training rows with a model fitted on them ranks the rows it happened to see below the rest:
on synthetic text drawn from the real language, an 80/20 split kept 88-93% of the unseen rows
and 38-41% of the seen ones (3 seeds, 300 + 300 sentences, keep half).

Folds: ``ngram`` 5 (a fit costs seconds); ``transformer`` 3 (each fit trains 2/3 of the rows for
4 epochs: about twice the cost of the former single 80% fit; measured in ``docs/curation.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ouroboros.splits import duplicate_groups, grouped_folds, input_key

Pair = tuple[str, str]
Predict = Callable[[list], np.ndarray]  # inputs -> P(label 1) of each


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 \
        else float("nan")


def _cross_pairs(pair: Pair, limit: int = 64) -> list[str]:
    """Hashed features of one (source, target) pair: target n-grams and word pairs."""
    src, tgt = pair[0].lower().split()[:limit], pair[1].lower().split()[:limit]
    feats = [f"t:{w}" for w in tgt] + [f"b:{a}_{b}" for a, b in zip(tgt, tgt[1:], strict=False)]
    return feats + [f"x:{s}|{t}" for s in set(src) for t in set(tgt)]


def fit_ngram(inputs: list, labels: np.ndarray, rng: np.random.Generator,
              pairs: bool = False) -> Predict:
    """TF-IDF (texts) or hashed pair features (pairs) with logistic regression, fitted on all
    of ``inputs`` (the vocabulary too: words first seen in new inputs carry no weight)."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    if pairs:
        vec = HashingVectorizer(analyzer=_cross_pairs, n_features=2 ** 20, alternate_sign=False,
                                norm=None)
        # Only the hashed columns the inputs use: the others would get weight 0 anyway (L2),
        # so the model is the same, fitted about 4x faster (134k of 1M columns, Multi30k).
        full = vec.transform(inputs)
        used = np.unique(full.indices)
        x, features = full[:, used], lambda new: vec.transform(new)[:, used]
    else:
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        x, features = vec.fit_transform(inputs), vec.transform
    clf = LogisticRegression(max_iter=2000).fit(x, labels)
    return lambda new: clf.predict_proba(features(new))[:, 1]


def _batch(rows: list[list[int]], pad: int) -> dict:
    """Right-padded token ids and attention mask, (rows, longest row)."""
    import torch
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    return {"input_ids": ids, "attention_mask": mask}


def _encoder(tok, pairs: bool, max_tokens: int) -> Callable[[Any], list[int]]:
    """Input -> token ids ending in EOS: ``text`` or ``source [EOS] target``, cut to fit."""
    eos = tok.eos_token_id

    def encode(x) -> list[int]:
        if pairs:
            src = tok(x[0], add_special_tokens=False)["input_ids"][:max_tokens // 2]
            ids = src + [eos] + tok(x[1], add_special_tokens=False)["input_ids"]
        else:
            ids = tok(x, add_special_tokens=False)["input_ids"]
        return ids[:max_tokens - 1] + [eos]
    return encode


def fit_transformer(inputs: list, labels: np.ndarray, rng: np.random.Generator,
                    pairs: bool = False, epochs: int = 4, n_layer: int = 2, n_embd: int = 64,
                    max_tokens: int = 128, vocab_size: int = 2000) -> Predict:
    """A small transformer classifier trained from scratch on all of ``inputs`` (CPU-friendly
    sizes; its BPE vocabulary is learned from the same inputs)."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from ouroboros.models.tokenizer import train_bpe_tokenizer
    tok = train_bpe_tokenizer([t for x in inputs for t in (x if pairs else (x,))], vocab_size)
    encode, pad = _encoder(tok, pairs, max_tokens), tok.pad_token_id
    encoded = [encode(x) for x in inputs]
    torch.manual_seed(int(rng.integers(2 ** 31)))
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tok), n_positions=max_tokens, n_embd=n_embd, n_layer=n_layer,
        n_head=4, num_labels=2, pad_token_id=pad, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    y = torch.tensor(labels, dtype=torch.long)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(inputs))
        for start in range(0, len(order), 32):
            idx = order[start:start + 32]
            out = model(**_batch([encoded[i] for i in idx], pad), labels=y[idx])
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    model.eval()

    @torch.no_grad()
    def predict(new: list) -> np.ndarray:
        rows = [encode(x) for x in new]
        out = [torch.softmax(model(**_batch(rows[s:s + 128], pad)).logits.float(), -1)[:, 1]
               .numpy() for s in range(0, len(rows), 128)]
        return np.concatenate(out) if out else np.zeros(0)
    return predict


@dataclass(frozen=True)
class Classifier:
    """A classifier kind: how to fit one model, and how many folds a cross-fit uses."""

    fit: Callable[..., Predict]
    folds: int


CLASSIFIERS = {"ngram": Classifier(fit_ngram, folds=5),
               "transformer": Classifier(fit_transformer, folds=3)}


@dataclass
class CrossFit:
    """A cross-fitted classifier: out-of-fold scores of its training inputs and their AUC."""

    scores: np.ndarray                 # P(label 1) of every training input, out of fold
    auc: float                         # ROC AUC of ``scores`` over all training inputs
    folds: int
    fit_all: Callable[[], Predict]     # fits one model on every training input
    seen: dict = field(default_factory=dict)  # input_key -> mean out-of-fold score
    final: Predict | None = None

    def predict(self, new: list) -> np.ndarray:
        """P(label 1) of ``new`` inputs. One that duplicates a training input (by input_key)
        gets that input's out-of-fold score: no model scores what it trained on. The others
        are scored by a model fitted on every training input, fitted on first use."""
        out = np.array([self.seen.get(input_key(x), np.nan) for x in new], dtype=float)
        unseen = np.isnan(out)
        if unseen.any():
            self.final = self.final or self.fit_all()
            out[unseen] = self.final([x for x, u in zip(new, unseen, strict=True) if u])
        return out

    def seen_count(self, new: list) -> int:
        """How many of ``new`` duplicate a training input (``predict`` scores them out of
        fold)."""
        return sum(input_key(x) in self.seen for x in new)


def _fold_count(folds: int, groups: np.ndarray, labels: np.ndarray) -> int:
    """``folds``, or fewer when a label has fewer groups (each training part needs both)."""
    per_label = [len(np.unique(groups[labels == y])) for y in (0, 1)]
    k = min(folds, *per_label)
    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 distinct inputs of each label "
                         f"(distinct inputs per label: {per_label})")
    return k


def _mean_by_key(inputs: list, scores: np.ndarray) -> dict:
    """input_key -> mean score of the inputs with that key."""
    sums: dict = {}
    for x, s in zip(inputs, scores, strict=True):
        total, count = sums.get(input_key(x), (0.0, 0))
        sums[input_key(x)] = (total + float(s), count + 1)
    return {k: total / count for k, (total, count) in sums.items()}


def cross_fit(classifier: str, inputs: list, labels: np.ndarray, rng: np.random.Generator,
              groups: np.ndarray | None = None, pairs: bool = False) -> CrossFit:
    """Cross-fit ``classifier`` on (inputs, labels 0/1) with its number of folds: every input
    scored by a model that did not train on it. Folds keep duplicate inputs and each of
    ``groups`` together (a real pair and the wrong answer made from it must not be split);
    deterministic for ``rng``."""
    spec, labels = CLASSIFIERS[classifier], np.asarray(labels)
    together = duplicate_groups(inputs, groups)
    k = _fold_count(spec.folds, together, labels)
    fold = grouped_folds(together, k, rng, strata=labels)
    seeds = rng.integers(2 ** 63, size=k + 1)  # drawn now: the final fit may come later
    scores = np.empty(len(inputs))
    for f in range(k):
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        predict = spec.fit([inputs[i] for i in fit], labels[fit],
                           np.random.default_rng(seeds[f]), pairs=pairs)
        scores[held] = predict([inputs[i] for i in held])
    return CrossFit(scores, _auc(labels, scores), k,
                    lambda: spec.fit(inputs, labels, np.random.default_rng(seeds[k]),
                                     pairs=pairs),
                    _mean_by_key(inputs, scores))


def negative_pairs(real: list[dict], rng: np.random.Generator,
                   mismatch: bool = True) -> list[Pair]:
    """One wrong answer per real pair: half answer another example's source (mismatch), half
    are the right target with a span of words shuffled and a word dropped (disfluent). Without
    sources (``mismatch=False``: language modelling) every one is disfluent, since another
    real text is no wrong answer."""
    out = []
    shift = rng.integers(1, max(2, len(real)))
    for i, e in enumerate(real):
        if mismatch and i % 2 == 0 and len(real) > 1:
            out.append((e["source"], real[(i + shift) % len(real)]["target"]))
            continue
        words = e["target"].split()
        if len(words) > 2:
            a = int(rng.integers(0, len(words) - 1))
            b = min(len(words), a + max(2, len(words) // 2))
            span = words[a:b]
            rng.shuffle(span)
            words = words[:a] + span + words[b:]
            del words[int(rng.integers(0, len(words)))]
        elif mismatch:
            words = real[(i + shift) % len(real)]["target"].split()
        else:  # too short to shuffle a span: reversed, or the word repeated
            words = words[::-1] if len(words) == 2 else words * 2
        out.append((e["source"], " ".join(words)))
    return out
