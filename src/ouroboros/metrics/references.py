"""Scores of test predictions against the ORIGINAL real references: ROUGE, BLEU, chrF, lengths.

* ROUGE via ``rouge-score`` with a Unicode-aware tokenizer: its default tokenizer drops every
  non-ASCII character (two identical Cyrillic strings score 0). Values are mean F1 x 100;
  rougeLsum splits sentences at ``. ! ?`` followed by a space. Intervals come from our own
  seeded bootstrap over examples (rouge-score's aggregator uses the unseeded global RNG).
* BLEU and chrF via ``sacrebleu.corpus_score``; sacrebleu's own signature is kept in ours.
  Intervals: seeded bootstrap over sentences, recomputing the corpus score from summed
  per-sentence statistics (as sacrebleu's own paired bootstrap does).
"""

from __future__ import annotations

import re

import numpy as np

from ouroboros.metrics.signature import EvalContext, MetricValue

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 4  # 4: empty_rate
# 3: sample_words counts the generated part only (not a real prefix)

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class UnicodeTokenizer:
    """Lower-cased ``\\w+`` runs in any script (no stemming)."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


def _for_lsum(text: str) -> str:
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge_per_example(predictions: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """F1 x 100 per example for each ROUGE type."""
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=UnicodeTokenizer())
    out = {t: np.zeros(len(predictions)) for t in ROUGE_TYPES}
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        scores = scorer.score(_for_lsum(r), _for_lsum(p))
        for t in ROUGE_TYPES:
            out[t][i] = 100 * scores[t].fmeasure
    return out


def bootstrap_interval(n: int, stat, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of ``stat(indices)`` over seeded resamples of 0..n-1."""
    rng = np.random.default_rng([seed, 95])
    values = [stat(rng.integers(0, n, size=n)) for _ in range(resamples)]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _with_interval(name: str, value: float, n: int, ctx: EvalContext, params: dict,
                   stat) -> list[MetricValue]:
    out = [MetricValue(name, value, VERSION, n, ctx.seed, params, True)]
    b = ctx.options.get("bootstrap", 1000)
    if b and n > 1:
        lo, hi = bootstrap_interval(n, stat, b, ctx.seed)
        ci = {**params, "bootstrap": b, "interval": "95% percentile"}
        out += [MetricValue(f"{name}@low", lo, VERSION, n, ctx.seed, ci, True),
                MetricValue(f"{name}@high", hi, VERSION, n, ctx.seed, ci, True)]
    return out


def _require_predictions(ctx: EvalContext, metric: str) -> tuple[list[str], list[str]]:
    if ctx.predictions is None:
        raise ValueError(f"metric '{metric}' scores test predictions: use it with the "
                         f"summarization or translation task")
    return ctx.predictions, ctx.references


def rouge(ctx: EvalContext) -> list[MetricValue]:
    """ROUGE-1/2/L/Lsum F1 of test predictions against the real references."""
    preds, refs = _require_predictions(ctx, "rouge")
    per = rouge_per_example(preds, refs)
    params = {"tokenizer": "unicode-word-lower", "stemmer": False, "score": "f1x100",
              "package": "rouge-score"}
    out = []
    for t in ROUGE_TYPES:
        scores = per[t]
        out += _with_interval(t, float(scores.mean()), len(preds), ctx, params,
                              lambda idx, s=scores: s[idx].mean())
    return out


def bleu(ctx: EvalContext) -> list[MetricValue]:
    """Corpus BLEU and chrF (sacrebleu) of test predictions against the real references."""
    from sacrebleu.metrics import BLEU, CHRF
    preds, refs = _require_predictions(ctx, "bleu")
    out = []
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        score = metric.corpus_score(preds, [refs]).score
        params = {"sacrebleu": str(metric.get_signature())}
        stats = np.array(metric._extract_corpus_statistics(preds, [refs]))

        def stat(idx, m=metric, s=stats):
            return m._compute_score_from_stats(s[idx].sum(0).tolist()).score
        out += _with_interval(name, float(score), len(preds), ctx, params, stat)
    return out


def lengths(ctx: EvalContext) -> list[MetricValue]:
    """Mean length in words of the test predictions, their ratio to the references, and the
    share of them that are empty (no word: a model that stops at once). The samples' lengths
    are measured for every generation (``sample_shape``)."""
    if ctx.predictions is None:
        return []
    pred = [len(t.split()) for t in ctx.predictions]
    ref = [len(t.split()) for t in ctx.references]
    n = len(pred)
    unique = len(set(ctx.predictions)) / max(1, n)
    return [MetricValue("prediction_words", float(np.mean(pred)), VERSION, n, ctx.seed,
                        {"set": "test-predictions"}, None),
            _empty_rate("empty_prediction_rate", pred, ctx, "test-predictions"),
            MetricValue("length_ratio", float(sum(pred) / max(1, sum(ref))), VERSION, n,
                        ctx.seed,
                        {"set": "test-predictions", "against": "real references"}, None),
            MetricValue("unique_predictions", unique, VERSION, n, ctx.seed,
                        {"set": "test-predictions"}, True)]


def _empty_rate(name: str, words: list[int], ctx: EvalContext, which: str) -> MetricValue:
    """Share of texts with no whitespace word (0 for no texts)."""
    return MetricValue(name, float(np.mean([w == 0 for w in words])) if words else 0.0,
                       VERSION, len(words), ctx.seed, {"set": which, "empty": "no word"}, False)


def sample_shape(ctx: EvalContext) -> list[MetricValue]:
    """Measured for every generation, whatever metrics are configured: the share of samples
    cut at ``max_new_tokens`` before they ended (learned without EOS; a growing share shows
    drift towards endless text), their mean length in words (the generated part: with
    real-prefix prompts not the prefix; with back-translation the generated source) and the
    share that are empty (a model that stops at once; an empty sample's perplexity is huge)."""
    flags = [r.get("source_finished" if r.get("generated") == "source" else "finished", True)
             is False for r in ctx.sample_rows]  # a back-translated source: its own flag
    words = [len(t.split()) for t in ctx.generated]
    return [MetricValue("unfinished_rate", float(np.mean(flags)) if flags else 0.0, VERSION,
                        len(flags), ctx.seed, {"set": "generated", "cut_at": "max_new_tokens"},
                        False),
            MetricValue("sample_words", float(np.mean(words)) if words else 0.0, VERSION,
                        len(words), ctx.seed, {"set": "generated"}, None),
            _empty_rate("empty_rate", words, ctx, "generated")]
