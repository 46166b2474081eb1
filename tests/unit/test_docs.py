"""Every metric a plug-in can produce is documented in docs/metrics.md."""

import re
from pathlib import Path

from ouroboros.config import TaskConfig
from ouroboros.metrics.diversity import diversity
from ouroboros.metrics.references import bleu, lengths, rouge
from ouroboros.metrics.signature import EvalContext
from ouroboros.metrics.tails import tails
from ouroboros.tasks.lm import LanguageModelling

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
PATTERNS = [(r"^distinct_\d$", "distinct_n"), (r"^entropy_\d$", "entropy_n"),
            (r"^rare_recall_\dg_.*$", "rare_recall_{n}g_{band}"),
            (r"^.*@(low|high)$", "<metric>@low"), (r"^trait_.*$", "trait_<name>")]


def documented_name(metric: str) -> str:
    for pattern, name in PATTERNS:
        if re.match(pattern, metric):
            return name
    return metric


def test_every_produced_metric_is_documented():
    texts = ["a b c d", "a b e f g"]
    real = [{"source": "", "target": t} for t in texts]
    ctx = EvalContext(samples=texts, real_test=real, seed=0, predictions=texts, real_train=real,
                      task=LanguageModelling(TaskConfig()), options={"bootstrap": 10})
    produced = {v.metric for fn in (diversity, tails, rouge, bleu, lengths) for v in fn(ctx)}
    produced |= {v.metric for v in lengths(EvalContext(samples=texts, real_test=[], seed=0))}
    produced |= {"perplexity", "test_oov_rate", "error_rate", "true_logprob", "cross_entropy",
                 "true_entropy", "kl_true_model", "tail_coverage", "reference_perplexity",
                 "reference_perplexity_median", "trait_toxicity"}
    missing = sorted({documented_name(m) for m in produced
                      if f"`{documented_name(m)}`" not in DOCS})
    assert missing == [], f"undocumented metrics: {missing}"
