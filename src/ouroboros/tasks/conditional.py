"""Summarization and translation: a real source, a target each generation regenerates.

Every generation answers the same real training sources (the seed study: each generation is
trained on the previous generation's summaries of the real documents); test predictions are
always scored against the original real references.
"""

from __future__ import annotations

import numpy as np

from ouroboros.config import GenerationConfig, TaskConfig
from ouroboros.tasks import example_id


class ConditionalTask:
    """A source -> target task; decoder-only models see ``template`` around the source."""

    fields = ("source", "target")
    conditional = True
    default_template = "{source}\n=>"

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg
        self.template = cfg.template or self.default_template

    def examples(self, records: list[dict], split: str) -> list[dict]:
        """One example per record, sources and targets stripped."""
        return [{"id": example_id(split, r, i), "source": r["source"].strip(),
                 "target": r["target"].strip()} for i, r in enumerate(records)]

    def prompts(self, real: list[dict], n: int, cfg: GenerationConfig,
                rng: np.random.Generator) -> list[dict]:
        """Every real training source once (or ``n`` drawn at random when n differs)."""
        picks = range(n) if n == len(real) else rng.integers(0, len(real), size=n)
        return [{"source": real[i]["source"], "prompted_by": real[i]["id"]} for i in picks]

    def context(self, source: str, templated: bool = True) -> str:
        """What the model is conditioned on: the templated source (decoder-only models)."""
        return self.template.format(source=source) if templated else source

    def text(self, example: dict) -> str:
        """The generated side: the target."""
        return example["target"]


class Summarization(ConditionalTask):
    """Abstractive summarization (DialogSum, CNN/DM, SAMSum, ...)."""

    default_template = "{source}\nSummary:"


class Translation(ConditionalTask):
    """Machine translation (Multi30k en->de, ...)."""

    default_template = "{source}\nTranslation:"


class Arithmetic(ConditionalTask):
    """Problems with exact answers (data.source arithmetic, or such files): the model sees the
    problem and writes the answer, which ``check`` compares exactly with the reference's."""

    default_template = "{source}"

    @staticmethod
    def check(prediction: str, reference: str) -> tuple[bool, bool]:
        """(the prediction states an answer, it is the reference's)."""
        from ouroboros.data.arithmetic import check
        return check(prediction, reference)
