"""Every metric the plug-ins produce is documented in docs/metrics.md. The names come from
running every registered metric plug-in on a real (tiny) model, never from a list in this test,
so a new metric cannot slip by undocumented."""

import re
from pathlib import Path

from ouroboros import registry
from ouroboros.config import TaskConfig, TraitConfig
from ouroboros.metrics.references import sample_shape
from ouroboros.metrics.signature import EvalContext
from ouroboros.tasks.lm import LanguageModelling

from ..conftest import lm_encoder

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
PATTERNS = [(r"^distinct_\d$", "distinct_n"), (r"^distinct_\d_window$", "distinct_n_window"),
            (r"^entropy_\d$", "entropy_n"),
            (r"^rare_recall_\dg_.*$", "rare_recall_{n}g_{band}"),
            (r"^.*@(low|high)$", "<metric>@low"), (r"^.*@se$", "<metric>@se"),
            (r"^trait_.*$", "trait_<name>")]


def documented_name(metric: str) -> str:
    for pattern, name in PATTERNS:
        if re.match(pattern, metric):
            return name
    return metric


def test_every_produced_metric_is_documented(tiny_model):
    model, tok, lang, texts = tiny_model
    real = [{"id": f"t{i}", "source": "", "target": t} for i, t in enumerate(texts[:40])]
    samples = texts[40:80]
    ctx = EvalContext(
        samples=samples, real_test=real, seed=0, truth=lang, model=model, tokenizer=tok,
        encoder=lm_encoder(tok), task=LanguageModelling(TaskConfig()), predictions=samples,
        real_train=real, sample_rows=[{"source": "", "target": t} for t in samples],
        reference_model=model,
        options={"bootstrap": 10, "prefix_words": 2,
                 "trait_configs": [TraitConfig(trait="emotion", scorer="vader")]})
    from .test_accuracy import arithmetic_context  # exact answers need their own task
    exact = arithmetic_context(["6 4", "x", "0 0 1", "7"], ["3", "0 0 1", "3 3"],
                               [{"prompted_by": "train-0", "target": "3"}])
    produced = {v.metric for name in registry.METRICS.names()
                for v in registry.METRICS.get(name)(exact if name == "accuracy" else ctx)} | {
                    v.metric for v in sample_shape(ctx)}
    assert {"perplexity", "kl_true_model", "rouge1", "bleu", "trait_emotion"} <= produced
    missing = sorted({documented_name(m) for m in produced
                      if f"`{documented_name(m)}`" not in DOCS})
    assert missing == [], f"undocumented metrics: {missing}"
