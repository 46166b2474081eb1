"""Language modelling: whole sentences, or text cut into fixed-length blocks of words.

Real examples have an empty source and the text as target (the loss covers all of it). Synthetic
examples are unconditional samples, or continuations of real prefixes (Shumailov et al.: the
training set is re-generated from real prompts); then the real prefix is the source, and only
the generated continuation is learned from.
"""

from __future__ import annotations

import numpy as np

from ouroboros.config import GenerationConfig, TaskConfig
from ouroboros.tasks import example_id


class LanguageModelling:
    """The ``lm`` task."""

    fields = ("text",)
    conditional = False

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg

    def examples(self, records: list[dict], split: str) -> list[dict]:
        """One example per record, or per block of ``block_words`` whitespace tokens."""
        if not self.cfg.block_words:
            return [{"id": example_id(split, r, i), "source": "", "target": r["text"]}
                    for i, r in enumerate(records)]
        words = [w for r in records for w in r["text"].split()]
        k = self.cfg.block_words
        return [{"id": f"{split}-b{i}", "source": "", "target": " ".join(words[s:s + k])}
                for i, s in enumerate(range(0, len(words) - k + 1, k))]

    def prompts(self, real: list[dict], n: int, cfg: GenerationConfig,
                rng: np.random.Generator) -> list[dict]:
        """``n`` requests: empty sources, or the first words of real examples."""
        if cfg.prompt == "none":
            return [{"source": "", "prompted_by": None} for _ in range(n)]
        picks = range(n) if n == len(real) else rng.integers(0, len(real), size=n)
        return [{"source": " ".join(real[i]["target"].split()[:cfg.prefix_words]),
                 "prompted_by": real[i]["id"]} for i in picks]

    def context(self, source: str, templated: bool = True) -> str:
        """The text the model continues: the prefix itself."""
        return source

    def text(self, example: dict) -> str:
        """The full text of an example (prefix and continuation)."""
        return f"{example['source']} {example['target']}".strip()
