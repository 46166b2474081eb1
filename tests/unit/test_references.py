"""ROUGE / BLEU / chrF wrappers: Unicode, seeded intervals, sacrebleu's numbers and signature."""

import pytest
from sacrebleu.metrics import BLEU, CHRF

from ouroboros.metrics.references import bleu, lengths, rouge, rouge_per_example
from ouroboros.metrics.signature import EvalContext


def _ctx(preds, refs, bootstrap=200, seed=0):
    return EvalContext(samples=[], real_test=[{"source": "", "target": r} for r in refs],
                       seed=seed, predictions=preds, options={"bootstrap": bootstrap})


def test_rouge_keeps_non_ascii_text():
    text = "Привет мир, как дела"
    assert rouge_per_example([text], [text])["rouge1"][0] == pytest.approx(100.0)
    # rouge-score's own tokenizer drops every non-ASCII character: the pitfall we avoid.
    from rouge_score import rouge_scorer
    assert rouge_scorer.RougeScorer(["rouge1"]).score(text, text)["rouge1"].fmeasure == 0.0


def test_rouge_matches_rouge_score_on_plain_ascii():
    from rouge_score import rouge_scorer
    pred, ref = "the cat sat on a mat", "a cat sat on the mat today"
    ours = rouge_per_example([pred], [ref])
    theirs = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"]).score(ref, pred)
    for t in ("rouge1", "rouge2", "rougeL"):
        assert ours[t][0] == pytest.approx(100 * theirs[t].fmeasure)


def test_intervals_are_seeded_and_bracket_the_value():
    preds = [f"word{i} shared" for i in range(30)]
    refs = [f"word{i % 7} shared" for i in range(30)]
    a = {v.metric: v.value for v in rouge(_ctx(preds, refs))}
    b = {v.metric: v.value for v in rouge(_ctx(preds, refs))}
    assert a == b
    assert a["rouge1@low"] <= a["rouge1"] <= a["rouge1@high"]
    c = {v.metric: v.value for v in rouge(_ctx(preds, refs, seed=1))}
    assert c["rouge1@low"] != a["rouge1@low"]


def test_bleu_and_chrf_are_sacrebleus():
    preds = ["Ein Hund läuft im Park .", "Zwei Männer spielen Fußball ."]
    refs = ["Ein Hund rennt im Park .", "Zwei Männer spielen Fußball ."]
    got = {v.metric: v for v in bleu(_ctx(preds, refs, bootstrap=0))}
    assert got["bleu"].value == pytest.approx(BLEU().corpus_score(preds, [refs]).score)
    assert got["chrf"].value == pytest.approx(CHRF().corpus_score(preds, [refs]).score)
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in got["bleu"].signature


def test_lengths_and_missing_predictions():
    got = {v.metric: v.value for v in lengths(_ctx(["a b", "c"], ["a b c d", "e f"]))}
    assert got["prediction_words"] == 1.5 and got["length_ratio"] == pytest.approx(3 / 6)
    assert got["unique_predictions"] == 1.0
    with pytest.raises(ValueError, match="summarization or translation"):
        rouge(EvalContext(samples=[], real_test=[], seed=0))
