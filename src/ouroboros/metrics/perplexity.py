"""Perplexity of a generation's model on the real held-out test data."""

from __future__ import annotations

import numpy as np

from ouroboros.metrics.signature import EvalContext, MetricValue
from ouroboros.models.scoring import sequence_nll
from ouroboros.models.tokenizer import encode_sequences


def test_nll(ctx: EvalContext) -> tuple[np.ndarray, np.ndarray]:
    """Per test sentence: model NLL in nats (EOS included, BOS given) and token count."""
    seqs = encode_sequences(ctx.tokenizer, ctx.real_test, ctx.context_length)
    return sequence_nll(ctx.model, seqs, ctx.tokenizer.pad_token_id, ctx.batch_size, ctx.device)


def perplexity(ctx: EvalContext) -> list[MetricValue]:
    """Token-level perplexity on the real test split, and its out-of-vocabulary rate."""
    nll, count = test_nll(ctx)
    ids = ctx.tokenizer(ctx.real_test, add_special_tokens=False)["input_ids"]
    unk = sum(x.count(ctx.tokenizer.unk_token_id) for x in ids)
    n = len(ctx.real_test)
    params = {"split": "real-test", "unit": "token", "eos": True}
    return [
        MetricValue("perplexity", float(np.exp(nll.sum() / count.sum())), 1, n, ctx.seed,
                    params, higher_is_better=False),
        MetricValue("test_oov_rate", unk / max(1, sum(len(x) for x in ids)), 1, n, ctx.seed,
                    {"split": "real-test"}, higher_is_better=False),
    ]
