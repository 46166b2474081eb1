"""Perplexity of a generation's model on the real held-out test data (every task)."""

from __future__ import annotations

import numpy as np

from ouroboros.metrics.signature import EvalContext, MetricValue
from ouroboros.models.encoding import encode_examples, target_cut
from ouroboros.models.scoring import sequence_nll

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 3  # 3: no continuation_perplexity (was NaN, n=0) when no text outlasts its prefix


def test_items(ctx: EvalContext, whole: bool = False) -> list[tuple[list[int], list[int]]]:
    """The real test examples encoded as (ids, labels).

    ``whole``: every target must fit the model's context whole (a cut target's NLL is not the
    probability of the text, so a sentence-level quantity such as KL cannot use it).
    """
    items = encode_examples(ctx.encoder, ctx.task, ctx.real_test)
    if whole:
        cut = [e["id"] for e, item in zip(ctx.real_test, items, strict=True)
               if target_cut(ctx.encoder, item)]
        if cut:
            raise ValueError(f"{len(cut)} real test examples (e.g. {cut[0]}) do not fit "
                             f"model.context_length={ctx.encoder.context_length} tokens with "
                             f"their EOS; raise it to score whole sentences")
    return items


def test_nll(ctx: EvalContext, whole: bool = False,
             items: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per real test example: model NLL in nats of its target (EOS included), token count."""
    items = test_items(ctx, whole) if items is None else items
    return sequence_nll(ctx.model, items, ctx.tokenizer.pad_token_id, ctx.batch_size, ctx.device)


def perplexity(ctx: EvalContext) -> list[MetricValue]:
    """Token-level perplexity of the real test targets, the tokenizer's unknown rate, and the
    share of test targets the context length cuts (their cut-off tokens are not scored)."""
    items = test_items(ctx)  # encoded once: scored, and checked for cut targets
    nll, count = test_nll(ctx, items=items)
    cut = sum(target_cut(ctx.encoder, item) for item in items)
    targets = [e["target"] for e in ctx.real_test]
    ids = ctx.tokenizer(targets, add_special_tokens=False)["input_ids"]
    unk = ctx.tokenizer.unk_token_id
    n_unk = sum(x.count(unk) for x in ids) if unk is not None else 0
    n = len(ctx.real_test)
    params = {"split": "real-test", "unit": "token", "eos": True,
              "given": "source" if ctx.task.conditional else "nothing"}
    return _continuation(ctx) + [
        MetricValue("perplexity", float(np.exp(nll.sum() / count.sum())), VERSION, n, ctx.seed,
                    params, higher_is_better=False),
        MetricValue("test_oov_rate", n_unk / max(1, sum(len(x) for x in ids)), VERSION, n,
                    ctx.seed,
                    {"split": "real-test"}, higher_is_better=False),
        MetricValue("test_targets_cut", cut / max(1, n), VERSION, n, ctx.seed,
                    {"split": "real-test", "context_length": ctx.encoder.context_length}, None),
    ]


def _continuation(ctx: EvalContext) -> list[MetricValue]:
    """lm with real-prefix prompts: perplexity of each real test text's continuation given its
    first ``prefix_words`` words, the positions synthetic data trains (the prefix of a
    synthetic example is real and masked, so a model trained on it never learns text starts,
    which whole-text perplexity scores)."""
    k = ctx.options.get("prefix_words")
    if ctx.task.conditional or not k:
        return []
    examples = []
    for e in ctx.real_test:
        words = e["target"].split()
        if len(words) > k:
            examples.append({"source": " ".join(words[:k]), "target": " ".join(words[k:])})
    if not examples:  # prefixes as long as the texts: nothing to score, nothing published
        return []
    items = encode_examples(ctx.encoder, ctx.task, examples)
    nll, count = sequence_nll(ctx.model, items, ctx.tokenizer.pad_token_id, ctx.batch_size,
                              ctx.device)
    params = {"split": "real-test", "unit": "token", "eos": True,
              "given": f"first {k} words", "texts": len(examples)}
    return [MetricValue("continuation_perplexity", float(np.exp(nll.sum() / count.sum())),
                        VERSION, len(examples), ctx.seed, params, higher_is_better=False)]
