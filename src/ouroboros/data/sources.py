"""Real-data sources: they give the real train/validation/test splits and fresh real data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ouroboros.config import DataConfig
from ouroboros.data.grammar import GroundTruthLanguage, LanguageSpec


@dataclass(frozen=True)
class RealSplits:
    """The real data of one seed: texts per split."""

    train: list[str]
    valid: list[str]
    test: list[str]


class DataSource(Protocol):
    """Where real data comes from."""

    def splits(self, seed: int) -> RealSplits:
        """Real train/validation/test splits for one seed."""

    def fresh(self, n: int, seed: int, generation: int) -> list[str]:
        """``n`` real examples never used before (for the ``fresh`` policy)."""

    def fingerprint(self) -> dict:
        """What identifies the data (enters every stage fingerprint)."""


class GrammarSource:
    """Real data sampled from the built-in ground-truth language.

    The test split depends only on the language (so every seed is measured on the same test
    sentences); train and validation are drawn per seed; fresh data comes from streams keyed by
    (seed, generation), disjoint from the ones the splits use.
    """

    def __init__(self, cfg: DataConfig) -> None:
        g = cfg.grammar
        self.cfg = cfg
        self.truth = GroundTruthLanguage(LanguageSpec(g.seed, g.zipf_exponent, g.version))

    def splits(self, seed: int) -> RealSplits:
        """Real splits: train and valid from the seed's stream, test from the language's."""
        rng = np.random.default_rng([seed, 0])
        train = self.truth.sample(self.cfg.train_size, rng)
        valid = self.truth.sample(self.cfg.valid_size, rng)
        test = self.truth.sample(self.cfg.test_size, np.random.default_rng([2**31, 1]))
        return RealSplits(train, valid, test)

    def fresh(self, n: int, seed: int, generation: int) -> list[str]:
        """New real sentences for generation ``generation`` of seed ``seed``."""
        return self.truth.sample(n, np.random.default_rng([seed, 1, generation]))

    def fingerprint(self) -> dict:
        """The language and the split sizes."""
        return {**self.truth.fingerprint(), "train_size": self.cfg.train_size,
                "valid_size": self.cfg.valid_size, "test_size": self.cfg.test_size}
