"""Logits processors that make sampling independent of batch size and batch order.

Each row's next token is drawn from ``softmax(filtered_logits / T)`` by the inverse of its
cumulative distribution at one uniform number, and that number is a hash of the sample's own
seed and the step (a counter-based generator): sample j gets the same numbers whatever batch
it lands in, and the whole batch's numbers are computed in one vectorised step on the scores'
device (no per-row generator, no vocabulary-sized noise). Up to last-bit differences of
batched matrix products, a sample does not depend on its batch; CPU and CUDA draw the same
numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ouroboros.config import GenerationConfig


class BanTokens(LogitsProcessor):
    """Never emit the given token ids (padding, BOS, unknown)."""

    def __init__(self, token_ids: list[int]) -> None:
        self.token_ids = token_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.token_ids] = -float("inf")
        return scores


MASK32 = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply; every input bit reaches every output bit),
    on int64 tensors holding values below 2**32: products stay below 2**59, never overflow."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & MASK32
    return (x >> 16) ^ x


def lanes(seeds: torch.Tensor) -> torch.Tensor:
    """The two 32-bit lanes of each stream (2 x rows): the seed's halves hashed together
    twice, so that two streams share both lanes only by a 2**-64 chance (one lane would make
    32 bits of state, and equal samples from about one pair of streams in 2**32)."""
    lo, hi = seeds & MASK32, (seeds >> 32) & MASK32
    return torch.stack([_mix(_mix(lo ^ 0x3C6EF372) ^ hi),
                        _mix(_mix(hi ^ 0xA54FF53A) ^ lo ^ 0x510E527F)])


def uniforms(seeds: torch.Tensor, step: int, lane: torch.Tensor | None = None) -> torch.Tensor:
    """One uniform number in [0, 1) per row for draw ``step`` of the row's stream ``seeds``
    (int64, 63-bit; ``lane``: their ``lanes``, if computed already), as float64 (only
    batch-sized vectors are float64): each lane hashed with the step and then with the other
    lane, 27 + 26 random bits."""
    lane = lanes(seeds) if lane is None else lane
    at = (step * 0x9E3779B9 + 0x7F4A7C15) & MASK32
    first = _mix(lane ^ torch.tensor([[at], [at ^ 0x6A09E667]], device=lane.device))
    a, b = _mix(first ^ lane.flip(0))
    return ((a >> 5).double() * 67108864.0 + (b >> 6).double()) / 9007199254740992.0


class SamplingError(ValueError):
    """Scores from which no token can be drawn (every one -inf or NaN)."""


def draw(scores: torch.Tensor, seeds: torch.Tensor, step: int,
         lane: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's token drawn from ``softmax(scores)`` (-inf: never) by the inverse CDF at
    ``uniforms(seeds, step)``: the first token whose cumulative probability exceeds u times
    the row's total, and never one of probability 0 (a token of probability 0 keeps the sum
    before it, and on a GPU, whose parallel scan adds in another order, zeros are put back
    and a running maximum keeps the sums ordered)."""
    probs = torch.softmax(scores.float(), dim=-1)
    cdf = probs.cumsum(dim=-1)
    if cdf.device.type != "cpu":  # a CPU adds in order: exact for 0, never decreasing
        cdf = torch.cummax(cdf.masked_fill(probs == 0, 0.0), dim=-1).values
    total = cdf[:, -1:].contiguous()
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        bad = int((~(torch.isfinite(total) & (total > 0))).nonzero()[0, 0])
        raise SamplingError(f"generation: row {bad} of a batch has no token to draw (its "
                            f"scores are all -inf or NaN: a model that diverged, or every "
                            f"token banned)")
    u = uniforms(seeds, step, lane).to(scores.device)
    target = (u[:, None] * total.double()).to(cdf.dtype)
    pick = torch.searchsorted(cdf, target, right=True)
    last = torch.searchsorted(cdf, total, right=False)  # the last token of probability > 0
    return torch.minimum(pick, last).squeeze(1)


class CounterSampler(LogitsProcessor):
    """Sample each row's next token with its own counter-based stream (``draw``): the
    returned scores are 0 for the drawn token and -inf elsewhere, so that greedy selection
    (``do_sample=False``) takes it. The step is the number of tokens generated so far."""

    def __init__(self, row_seeds: list[int]) -> None:
        wrong = [s for s in row_seeds if not 0 <= int(s) < 2**63]
        if wrong:
            raise ValueError(f"row seeds are integers in [0, 2**63), not {wrong[0]}")
        self.seeds = torch.tensor([int(s) for s in row_seeds], dtype=torch.int64)
        self.lanes = lanes(self.seeds)  # once per batch, not per step
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        if self.seeds.device != scores.device:
            self.seeds, self.lanes = self.seeds.to(scores.device), self.lanes.to(scores.device)
        token = draw(scores, self.seeds, input_ids.shape[1] - self.start, self.lanes)
        out = torch.full_like(scores, -float("inf"))
        return out.scatter_(1, token[:, None], 0.0)


def row_seeds(seed: int, start: int, count: int) -> list[int]:
    """Independent 63-bit seeds for samples ``start .. start+count-1`` of stage seed ``seed``."""
    return [int(np.random.SeedSequence([seed, j]).generate_state(2, np.uint64)[0] >> 1)
            for j in range(start, start + count)]


def processors(cfg: GenerationConfig, banned: list[int],
               seeds: list[int] | None) -> LogitsProcessorList:
    """The processor chain for one batch: ban, then (sampling only) warp and add noise."""
    chain: list[LogitsProcessor] = [BanTokens(banned)]
    if cfg.decoding == "sample":
        chain.append(TemperatureLogitsWarper(cfg.temperature))
        if cfg.top_k:
            chain.append(TopKLogitsWarper(cfg.top_k))
        if cfg.top_p < 1.0:
            chain.append(TopPLogitsWarper(cfg.top_p))
        chain.append(CounterSampler(seeds or []))
    return LogitsProcessorList(chain)
