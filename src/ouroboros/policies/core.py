"""The five data policies of the model-collapse literature, as small pure functions.

Every policy gets the same context and returns generation g's training set (g >= 1). Examples
are dicts with at least ``text`` and ``origin`` ("real" or "synthetic"); synthetic examples
also carry ``generation`` (the generation of the model that produced them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Example = dict


@dataclass
class PolicyContext:
    """What a policy may draw from when assembling generation ``generation``'s training set."""

    generation: int
    real: list[Example]                 # the real training split (generation 0's data)
    synthetic: list[list[Example]]      # synthetic[k]: samples of generation k's model, k < g
    size: int                           # the target size (the real training set's size)
    rng: np.random.Generator
    fresh: Callable[[int], list[Example]]  # n never-used real examples
    real_fraction: float | None = None
    # training.order given: keep the synthetic samples in their curated order (most
    # human-like or best first), after the real rows, instead of drawing them in random order.
    ordered: bool = False


def _take(pool: list[Example], n: int, rng: np.random.Generator,
          ordered: bool = False) -> list[Example]:
    """``n`` examples of ``pool`` drawn without replacement, in random order (``ordered``: in
    the pool's order; the same draw)."""
    if n > len(pool):
        raise ValueError(f"policy needs {n} examples but only {len(pool)} are available")
    chosen = rng.permutation(len(pool))[:n]
    return [pool[i] for i in (np.sort(chosen) if ordered else chosen)]


def replace(ctx: PolicyContext) -> list[Example]:
    """Train only on the previous generation's samples (Shumailov et al.; "Replace")."""
    return list(ctx.synthetic[-1])


def accumulate(ctx: PolicyContext) -> list[Example]:
    """Real data plus every generation's samples so far (Gerstgrasser et al.; "Accumulate")."""
    return ctx.real + [x for gen in ctx.synthetic for x in gen]


def accumulate_subsample(ctx: PolicyContext) -> list[Example]:
    """A random subset of the accumulated pool, of the replace size (compute-matched)."""
    return _take(accumulate(ctx), ctx.size, ctx.rng)


def mix(ctx: PolicyContext) -> list[Example]:
    """A fixed share of real data at fixed total size (Shumailov et al.: keep 10% real)."""
    n_real = round(ctx.real_fraction * ctx.size)
    return (_take(ctx.real, n_real, ctx.rng)
            + _take(ctx.synthetic[-1], ctx.size - n_real, ctx.rng, ctx.ordered))


def fresh(ctx: PolicyContext) -> list[Example]:
    """A share of new real data never used before, the rest the previous samples (Alemohammad
    et al.'s fresh-data loop)."""
    n_real = round(ctx.real_fraction * ctx.size)
    return ctx.fresh(n_real) + _take(ctx.synthetic[-1], ctx.size - n_real, ctx.rng, ctx.ordered)
