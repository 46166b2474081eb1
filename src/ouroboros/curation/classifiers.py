"""Text classifiers trained inside a curation step: real vs synthetic (the detector) and
matching vs mismatched (source, target) pairs (the model-based verifier).

* ``ngram``: TF-IDF of word 1-2-grams and logistic regression (scikit-learn). For pairs, the
  features also hold every (source word, target word) pair, hashed: the model learns which
  target words go with which source words (lexical translation, copying in summaries).
* ``transformer``: a small transformer (GPT-2 blocks, last-token pooling) trained from scratch
  on a byte-level BPE vocabulary learned from the training texts; pairs are encoded as
  ``source [EOS] target [EOS]``.

Each is trained on a seeded 80% split and returns P(label 1) for any texts, with the held-out
ROC AUC on the other 20%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Pair = tuple[str, str]


@dataclass
class Trained:
    """A fitted classifier: P(label 1) of new inputs, and its held-out quality."""

    predict: Callable[[list], np.ndarray]
    auc: float
    train_examples: int


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 \
        else float("nan")


def _split(n: int, rng: np.random.Generator,
           groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded 80/20 split of n inputs; inputs of one group stay on one side (a real pair and
    the wrong answers made from it must not be split, or the held-out AUC is meaningless)."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    names = np.unique(groups)
    held_names = rng.permutation(names)[int(0.8 * len(names)):]
    held = np.isin(groups, held_names)
    return np.flatnonzero(~held), np.flatnonzero(held)


def _cross_pairs(pair: Pair, limit: int = 64) -> list[str]:
    """Hashed features of one (source, target) pair: target n-grams and word pairs."""
    src, tgt = pair[0].lower().split()[:limit], pair[1].lower().split()[:limit]
    feats = [f"t:{w}" for w in tgt] + [f"b:{a}_{b}" for a, b in zip(tgt, tgt[1:], strict=False)]
    return feats + [f"x:{s}|{t}" for s in set(src) for t in set(tgt)]


def train_ngram(inputs: list, labels: np.ndarray, rng: np.random.Generator,
                pairs: bool = False, groups: np.ndarray | None = None) -> Trained:
    """TF-IDF (texts) or hashed pair features (pairs) with logistic regression."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    fit, held = _split(len(inputs), rng, groups)
    if pairs:
        vec = HashingVectorizer(analyzer=_cross_pairs, n_features=2 ** 20, alternate_sign=False,
                                norm=None)
        x = vec.transform(inputs)
    else:
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        x = vec.fit_transform(inputs)
    clf = LogisticRegression(max_iter=2000).fit(x[fit], labels[fit])
    auc = _auc(labels[held], clf.predict_proba(x[held])[:, 1])
    return Trained(lambda new: clf.predict_proba(vec.transform(new))[:, 1], auc, len(fit))


def train_transformer(inputs: list, labels: np.ndarray, rng: np.random.Generator,
                      pairs: bool = False, epochs: int = 4, n_layer: int = 2, n_embd: int = 64,
                      max_tokens: int = 128, vocab_size: int = 2000,
                      groups: np.ndarray | None = None) -> Trained:
    """A small transformer classifier trained from scratch (CPU-friendly sizes)."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from ouroboros.models.tokenizer import train_bpe_tokenizer
    fit, held = _split(len(inputs), rng, groups)
    texts = [t for x in inputs for t in (x if pairs else (x,))]
    tok = train_bpe_tokenizer(texts, vocab_size)
    eos, pad = tok.eos_token_id, tok.pad_token_id

    def encode(x) -> list[int]:
        if pairs:
            src = tok(x[0], add_special_tokens=False)["input_ids"][:max_tokens // 2]
            tgt = tok(x[1], add_special_tokens=False)["input_ids"]
            ids = src + [eos] + tgt
        else:
            ids = tok(x, add_special_tokens=False)["input_ids"]
        return ids[:max_tokens - 1] + [eos]

    def batch(rows: list[list[int]]) -> dict:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        return {"input_ids": ids, "attention_mask": mask}

    encoded = [encode(x) for x in inputs]
    torch.manual_seed(int(rng.integers(2 ** 31)))
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tok), n_positions=max_tokens, n_embd=n_embd, n_layer=n_layer,
        n_head=4, num_labels=2, pad_token_id=pad, bos_token_id=tok.bos_token_id,
        eos_token_id=eos, resid_pdrop=0.1, embd_pdrop=0.1,
        attn_pdrop=0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    y = torch.tensor(labels, dtype=torch.long)
    model.train()
    for _ in range(epochs):
        order = fit[rng.permutation(len(fit))]
        for start in range(0, len(order), 32):
            idx = order[start:start + 32]
            out = model(**batch([encoded[i] for i in idx]), labels=y[idx])
            opt.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    model.eval()

    @torch.no_grad()
    def predict(new: list) -> np.ndarray:
        rows = [encode(x) for x in new]
        out = []
        for start in range(0, len(rows), 128):
            logits = model(**batch(rows[start:start + 128])).logits.float()
            out.append(torch.softmax(logits, -1)[:, 1].numpy())
        return np.concatenate(out) if out else np.zeros(0)

    auc = _auc(labels[held], predict([inputs[i] for i in held]))
    return Trained(predict, auc, len(fit))


CLASSIFIERS = {"ngram": train_ngram, "transformer": train_transformer}


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
