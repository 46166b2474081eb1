"""Logits processors that make sampling independent of batch size and batch order.

Sampling is done as greedy decoding of ``filtered_logits / T + Gumbel noise``: the argmax of
Gumbel-perturbed log-probabilities is an exact draw from the softmax. Each row draws its noise
from its own generator, seeded by the sample's global index, so sample j is the same whatever
batch it lands in (up to last-bit differences of batched matrix products).
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


class RowGumbelNoise(LogitsProcessor):
    """Add Gumbel(0, 1) noise drawn from one generator per row.

    The generators live on the device of the scores (CPU: Mersenne Twister; CUDA: Philox),
    so a GPU draws its noise where the scores are instead of moving a batch x vocabulary
    array from the CPU at every step. A sample is reproducible on one device type; CPU and
    CUDA draw different noise.
    """

    def __init__(self, row_seeds: list[int]) -> None:
        self.seeds = [int(s) for s in row_seeds]
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        vocab, device = scores.shape[-1], scores.device
        if not self.generators:
            self.generators = [torch.Generator(device=device).manual_seed(s)
                               for s in self.seeds]
        u = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64, device=device)
                         for g in self.generators])
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        return scores + gumbel.to(scores.dtype)


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
        chain.append(RowGumbelNoise(seeds or []))
    return LogitsProcessorList(chain)
