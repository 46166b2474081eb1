"""Language modelling: every example is a sentence; synthetic data are whole sentences."""

from __future__ import annotations

import numpy as np

from ouroboros.config import GenerationConfig


class LanguageModelling:
    """The ``lm`` task: train on sentences, generate sentences (optionally from real prefixes)."""

    def prompts(self, real_train: list[str], n: int, cfg: GenerationConfig,
                rng: np.random.Generator) -> list[str]:
        """``n`` prompts: empty (unconditional) or the first words of random real sentences."""
        if cfg.prompt == "none":
            return [""] * n
        picks = rng.integers(0, len(real_train), size=n)
        return [" ".join(real_train[i].split()[:cfg.prefix_words]) for i in picks]

    def join(self, prompt: str, continuation: str) -> str:
        """The synthetic example made of a prompt and the model's continuation."""
        return f"{prompt} {continuation}".strip()
