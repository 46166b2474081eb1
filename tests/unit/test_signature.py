"""Signatures are unambiguous: no repeated keys, quoted values, and they read back whole."""

import pytest

from ouroboros import registry
from ouroboros.config import TaskConfig, TraitConfig
from ouroboros.metrics.signature import (
    EvalContext,
    MetricValue,
    format_signature,
    parse_signature,
)
from ouroboros.tasks.lm import LanguageModelling

from ..conftest import lm_encoder


@pytest.mark.parametrize("key", ["seed", "n", "v", "a|b", "a=b", ""])
def test_parameters_cannot_repeat_or_break_signature_fields(key):
    with pytest.raises(ValueError, match="ambiguous"):
        MetricValue("m", 1.0, 1, 10, 0, {key: 3})


def test_values_with_separators_are_quoted_and_read_back():
    params = {"sacrebleu": "nrefs:1|case:mixed", "eq": "a=b", "plain": "white space",
              "literal": "1", "word": "False", "flag": False, "none": None, "x": 0.5,
              "nested": {"k": ["a|b", 2]}, "empty": "", "quote": '"q'}
    v = MetricValue("m", 1.0, 2, 10, 3, params)
    assert v.signature == ('m|v2|n=10|seed=3|empty=""|eq="a=b"|flag=false|literal="1"|'
                           'nested={"k": ["a|b", 2]}|none=null|plain=white space|'
                           'quote="\\"q"|sacrebleu="nrefs:1|case:mixed"|word=False|x=0.5')
    back = parse_signature(v.signature)
    assert back == {"metric": "m", "version": 2, "n": 10, "seed": 3, "params": params}
    assert format_signature(**back) == v.signature


@pytest.mark.parametrize("text", ["m|v1|n=1|seed=0|seed=2", "m|v1|n=1|seed=0|a=1|a=1",
                                  "m|v1|seed=0|n=1", "m|1|n=1|seed=0", 'm|v1|n=1|seed=0|a="x"y',
                                  "m|v1|n=1|seed=0|", "m|v1|n=1|seed=0|b=1|a=2",
                                  "m|v1|n=1|seed=0|a=nrefs:1|case:mixed"])
def test_parse_refuses_repeated_keys_and_malformed_text(text):
    with pytest.raises(ValueError):
        parse_signature(text)


def test_every_metric_signature_has_unique_keys_and_reads_back(tiny_model):
    model, tok, lang, texts = tiny_model
    real = [{"source": "", "target": t} for t in texts[20:40]]
    samples = texts[:20] + ["dog the sleeps ."]
    ctx = EvalContext(
        samples=samples, real_test=real, seed=7, truth=lang, model=model, tokenizer=tok,
        encoder=lm_encoder(tok), task=LanguageModelling(TaskConfig()), predictions=samples[:20],
        real_train=real, sample_rows=[{"source": "", "target": t} for t in samples],
        reference_model=model, options={"bootstrap": 10, "trait_configs": [
            TraitConfig(trait="emotion_intensity", scorer="vader")]})
    values = [v for name in registry.METRICS.names() if name != "accuracy"
              for v in registry.METRICS.get(name)(ctx)]
    from .test_accuracy import arithmetic_context  # exact answers need their own task
    values += registry.METRICS.get("accuracy")(arithmetic_context(
        ["6 4", "x", "0 0 1", "7"], ["3", "0 0 1", "3 3"], [{"prompted_by": "train-0",
                                                             "target": "3"}], seed=7))
    assert len({v.metric for v in values}) > 40
    for v in values:
        back = parse_signature(v.signature)  # raises on a repeated key
        assert back == {"metric": v.metric, "version": v.version, "n": v.n, "seed": 7,
                        "params": v.params}, v.signature
        assert format_signature(**back) == v.signature
