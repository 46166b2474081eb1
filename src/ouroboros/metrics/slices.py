"""Metrics sliced by origin: the same per-example measures for each part of a set.

Three sets of one cell and generation g can be sliced:

* ``trainset``: what model g trained on, by origin (``real``, ``real-fresh``,
  ``synthetic-g<k>``, with ``-<generator>`` when several generators made it);
* ``samples``: what model g (and its fellow generators) generated, by generator;
* ``candidates``: the samples curation saw, by outcome (``kept``, or ``dropped:<step>`` for the
  first step that dropped it).

Each slice gets ``count`` and, per example: ``words`` (mean target length),
``reference_perplexity`` (median per-example token perplexity under the seed's frozen
generation-0 model), on the ground-truth language ``error_rate`` (share of probability-zero
texts) and ``true_logprob`` (mean exact log-probability of the valid ones), and for candidates
the mean of every score curation gave (``score_<name>``). A slice ``all`` holds the whole set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# Bump when this module's numbers change: it re-runs the slice stages.
VERSION = 1

SETS = ("trainset", "samples", "candidates")


def origin_of(row: dict) -> str:
    """A training example's origin: real, real-fresh, synthetic-g<k>[-<generator>]."""
    key = row["origin"] if row["origin"] != "synthetic" else f"synthetic-g{row['generation']}"
    return f"{key}-{row['generator']}" if "generator" in row else key


def outcome_of(row: dict) -> str:
    """A curation candidate's outcome: kept, or dropped:<first step that dropped it>."""
    for d in row.get("decisions", []):
        if not d["kept"]:
            return f"dropped:{d['step']}"
    return "kept"


GROUPING: dict[str, Callable[[dict], str]] = {
    "trainset": origin_of,
    "samples": lambda r: r.get("generator", "all"),
    "candidates": outcome_of,
}


def slice_rows(name: str, rows: list[dict], text: Callable[[dict], str], truth: Any = None,
               reference_ppl: Callable[[list[dict]], np.ndarray] | None = None) -> list[dict]:
    """Tidy ``{set, group, metric, value, n}`` rows for one set sliced by its grouping."""
    if not rows:
        return []
    texts = [text(r) for r in rows]
    per_row: dict[str, np.ndarray] = {
        "words": np.array([len(r["target"].split()) for r in rows], dtype=float)}
    if truth is not None:
        per_row["true_logprob"] = truth.logprobs(texts)
    if reference_ppl is not None:
        per_row["reference_perplexity"] = np.asarray(reference_ppl(rows), dtype=float)
    scores = sorted({k for r in rows for k in r.get("scores", {})})
    for k in scores:
        per_row[f"score_{k}"] = np.array([float(r.get("scores", {}).get(k, np.nan))
                                          for r in rows])
    keys = [GROUPING[name](r) for r in rows]
    groups = {"all": np.arange(len(rows))}
    for g in sorted(set(keys)):
        if g != "all":
            groups[g] = np.array([i for i, k in enumerate(keys) if k == g])
    out = []
    for group, idx in groups.items():
        def add(metric: str, value: float, n: int, group: str = group) -> None:
            out.append({"set": name, "group": group, "metric": metric, "value": value, "n": n})
        add("count", float(len(idx)), len(idx))
        add("words", float(per_row["words"][idx].mean()), len(idx))
        if "reference_perplexity" in per_row:
            add("reference_perplexity", float(np.median(per_row["reference_perplexity"][idx])),
                len(idx))
        if "true_logprob" in per_row:
            lp = per_row["true_logprob"][idx]
            valid = np.isfinite(lp)
            add("error_rate", float(1 - valid.mean()), len(idx))
            add("true_logprob", float(lp[valid].mean()) if valid.any() else float("nan"),
                int(valid.sum()))
        for k in scores:
            x = per_row[f"score_{k}"][idx]
            x = x[np.isfinite(x)]
            add(f"score_{k}", float(x.mean()) if len(x) else float("nan"), len(x))
    return out
