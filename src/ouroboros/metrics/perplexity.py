"""Perplexity of a generation's model on the real held-out test data (every task)."""

from __future__ import annotations

import numpy as np

from ouroboros.metrics.signature import EvalContext, MetricValue
from ouroboros.models.encoding import encode_examples
from ouroboros.models.scoring import sequence_nll

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 1


def test_nll(ctx: EvalContext) -> tuple[np.ndarray, np.ndarray]:
    """Per real test example: model NLL in nats of its target (EOS included), token count."""
    items = encode_examples(ctx.encoder, ctx.task, ctx.real_test)
    return sequence_nll(ctx.model, items, ctx.tokenizer.pad_token_id, ctx.batch_size, ctx.device)


def perplexity(ctx: EvalContext) -> list[MetricValue]:
    """Token-level perplexity of the real test targets, and the tokenizer's unknown rate."""
    nll, count = test_nll(ctx)
    targets = [e["target"] for e in ctx.real_test]
    ids = ctx.tokenizer(targets, add_special_tokens=False)["input_ids"]
    unk = ctx.tokenizer.unk_token_id
    n_unk = sum(x.count(unk) for x in ids) if unk is not None else 0
    n = len(ctx.real_test)
    params = {"split": "real-test", "unit": "token", "eos": True,
              "given": "source" if ctx.task.conditional else "nothing"}
    return [
        MetricValue("perplexity", float(np.exp(nll.sum() / count.sum())), VERSION, n, ctx.seed,
                    params, higher_is_better=False),
        MetricValue("test_oov_rate", n_unk / max(1, sum(len(x) for x in ids)), VERSION, n,
                    ctx.seed,
                    {"split": "real-test"}, higher_is_better=False),
    ]
