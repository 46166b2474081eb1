"""Exact accuracy on tasks with right and wrong answers (task ``arithmetic``): of the model's
greedy answers to real held-out test problems and to its own real training problems, and of
the synthetic samples it wrote for the training problems. Every prediction is checked by the
task's exact checker; one that states no answer is wrong, and counted apart (``unparsed``).
"""

from __future__ import annotations

import math

# The answer checkers this metric runs through ctx.task, imported so that they are part of its
# code identity (experiment/versions.py): an edit to them needs a new VERSION here.
from ouroboros.data import arithmetic as _digits  # noqa: F401
from ouroboros.metrics.signature import EvalContext, MetricValue
from ouroboros.tasks import answers as _answers  # noqa: F401

# Bump when this module's numbers change: it re-runs the evaluations that use it.
VERSION = 2


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else math.nan


def _cluster_se(flags: list[bool], clusters: list) -> float:
    """Standard error of a share whose answers come in clusters (the candidates of one
    problem are not independent): sqrt(sum_j (y_j - p m_j)^2) / N over clusters j with y_j
    right of m_j; with one answer per problem it is the binomial sqrt(p(1-p)/n)."""
    n = len(flags)
    if not n:
        return math.nan
    p = sum(flags) / n
    right: dict = {}
    size: dict = {}
    for flag, key in zip(flags, clusters, strict=True):
        right[key] = right.get(key, 0) + flag
        size[key] = size.get(key, 0) + 1
    return math.sqrt(sum((right[k] - p * size[k]) ** 2 for k in size)) / n


def _values(name: str, checked: list[tuple[bool, bool]], ctx: EvalContext,
            params: dict, clusters: list | None = None) -> list[MetricValue]:
    """``<name>`` (share right), ``<name>@se`` (its standard error over the problems: the
    problems are the sample, a seed's model fixed; answers to one problem form a cluster) and
    ``<name>_unparsed`` (share stating no answer)."""
    n = len(checked)
    right = _share([c for _, c in checked])
    se = _cluster_se([c for _, c in checked], clusters or list(range(n)))
    params = {**params, **ctx.task.identity()}
    return [MetricValue(name, right, VERSION, n, ctx.seed, params, True),
            MetricValue(f"{name}@se", se, VERSION, n, ctx.seed,
                        {**params, "of": name, "method": "clustered by problem"}, None),
            MetricValue(f"{name}_unparsed", _share([not p for p, _ in checked]), VERSION, n,
                        ctx.seed, params, False)]


def accuracy(ctx: EvalContext) -> list[MetricValue]:
    """accuracy (real test problems), train_accuracy (real training problems, what a targeted
    teacher reads) and sample_accuracy (the generation's samples, against the real answer of
    the problem that prompted each)."""
    check = getattr(ctx.task, "check", None)
    if check is None or ctx.predictions is None:
        raise ValueError("metric 'accuracy' needs a task with exact answers (arithmetic, "
                         "gsm8k, classification)")
    decoding = ctx.options.get("eval_decoding", "greedy")
    out = _values("accuracy", [check(p, r) for p, r in zip(
        ctx.predictions, ctx.references, strict=True)], ctx,
        {"split": "real-test", "decoding": decoding})
    answers = {e["id"]: e["target"] for e in ctx.real_train}
    if ctx.train_predictions is not None:
        out += _values("train_accuracy", [check(p, answers[i]) for i, p in
                                          ctx.train_predictions.items()], ctx,
                       {"split": "real-train", "decoding": decoding})
    # A teacher's example (LLM2LLM) is a new problem, not an answer to the one that prompted it.
    prompted = [r for r in ctx.sample_rows if r.get("prompted_by") in answers
                and "teacher" not in r]
    if prompted:
        out += _values("sample_accuracy", [check(r["target"], answers[r["prompted_by"]])
                                           for r in prompted], ctx,
                       {"set": "generated", "against": "real answer"},
                       [r["prompted_by"] for r in prompted])
    return out
