"""Exact accuracy on tasks with right and wrong answers (task ``arithmetic``): of the model's
greedy answers to real held-out test problems and to its own real training problems, and of
the synthetic samples it wrote for the training problems. Every prediction is checked by the
task's exact checker; one that states no answer is wrong, and counted apart (``unparsed``).
"""

from __future__ import annotations

import math

from ouroboros.metrics.signature import EvalContext, MetricValue

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 1


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def _values(name: str, checked: list[tuple[bool, bool]], ctx: EvalContext,
            params: dict) -> list[MetricValue]:
    """``<name>`` (share right, with its binomial standard error over the problems in the
    signature) and ``<name>_unparsed`` (share stating no answer)."""
    n = len(checked)
    right = _share([c for _, c in checked])
    se = math.sqrt(right * (1 - right) / n) if n else math.nan
    return [MetricValue(name, right, VERSION, n, ctx.seed,
                        {**params, "check": "exact", "se": round(se, 6)}, True),
            MetricValue(f"{name}_unparsed", _share([not p for p, _ in checked]), VERSION, n,
                        ctx.seed, {**params, "check": "exact"}, False)]


def accuracy(ctx: EvalContext) -> list[MetricValue]:
    """accuracy (real test problems), train_accuracy (real training problems, what a targeted
    teacher reads) and sample_accuracy (the generation's samples, against the real answer of
    the problem that prompted each)."""
    check = getattr(ctx.task, "check", None)
    if check is None or ctx.predictions is None:
        raise ValueError("metric 'accuracy' needs a task with exact answers (arithmetic)")
    decoding = ctx.options.get("eval_decoding", "greedy")
    out = _values("accuracy", [check(p, r) for p, r in zip(
        ctx.predictions, ctx.references, strict=True)], ctx,
        {"split": "real-test", "decoding": decoding})
    if ctx.train_predictions is not None:
        train = ctx.real_train[:len(ctx.train_predictions)]
        out += _values("train_accuracy", [check(p, e["target"]) for p, e in zip(
            ctx.train_predictions, train, strict=True)], ctx,
            {"split": "real-train", "decoding": decoding})
    answers = {e["id"]: e["target"] for e in ctx.real_train}
    prompted = [r for r in ctx.sample_rows if r.get("prompted_by") in answers]
    if prompted:
        out += _values("sample_accuracy", [check(r["target"], answers[r["prompted_by"]])
                                           for r in prompted], ctx,
                       {"set": "generated", "against": "real answer"})
    return out
