"""Summarization and translation: a real source, a target each generation regenerates.

Every generation answers the same real training sources (the seed study: each generation is
trained on the previous generation's summaries of the real documents); test predictions are
always scored against the original real references.
"""

from __future__ import annotations

import re

import numpy as np

from ouroboros.config import GenerationConfig, TaskConfig
from ouroboros.tasks import answers, example_id


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

    @staticmethod
    def answer(text: str) -> str | None:
        """The answer a text states (digits one per token), or None."""
        from ouroboros.data.arithmetic import answer_of
        return answer_of(text)

    def identity(self) -> dict:
        """How answers are extracted and compared (in the accuracy signature)."""
        return {"task": "arithmetic", "match": "exact digits", "pattern": "after last ####"}


class AnswerTask(ConditionalTask):
    """A task whose targets end in an answer that can be right or wrong: ``answer`` extracts it
    (the last match of ``task.answer_pattern``'s group), ``check`` compares it with the
    reference's, exactly or by numeric value. A prediction with no answer is unparsed."""

    default_pattern = r"(.+)"
    default_match = "exact"

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        self.pattern = re.compile(cfg.answer_pattern or self.default_pattern)
        self.match = cfg.answer_match or self.default_match

    def answer(self, text: str):
        """The answer a text states (tasks/answers.py), or None."""
        return answers.extract(text, self.pattern, self.match)

    def check(self, prediction: str, reference: str) -> tuple[bool, bool]:
        """(the prediction states an answer, it is the reference's); a reference that states
        none is a data error (refused before any work)."""
        return answers.compare(prediction, reference, self.pattern, self.match)

    def identity(self) -> dict:
        """How answers are extracted and compared (in the accuracy signature)."""
        return {"task": self.cfg.name, "match": self.match, "pattern": self.pattern.pattern}


class GSM8K(AnswerTask):
    """Math word problems in GSM8K's format: a question; an answer whose rationale ends
    ``#### <number>``. Answers compare by numeric value (1,000 = 1000.0)."""

    default_template = "Question: {source}\nAnswer:"
    default_pattern = r"####\s*([^#\n]*)"
    default_match = "numeric"


class Classification(AnswerTask):
    """Classification as generation (TREC, SST-2 style): the target is a label, compared
    exactly (whitespace normalised)."""

    default_template = "{source}\nLabel:"
