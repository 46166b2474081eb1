"""Name -> plug-in lookup for every kind of plug-in, with lazy imports and "did you mean"."""

from __future__ import annotations

import difflib
import importlib
from typing import Any


class UnknownPluginError(ValueError):
    """A config named a plug-in that is not registered."""


class Registry:
    """A plain dict of plug-in names to ``"module:attribute"`` paths, imported on first use."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self.entries = entries

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.entries)

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise with the valid names and the closest one."""
        if name in self.entries:
            return name
        close = difflib.get_close_matches(name, self.entries, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownPluginError(
            f"unknown {self.kind} '{name}'; valid names: {', '.join(self.names())}{hint}")

    def get(self, name: str) -> Any:
        """The plug-in object registered as ``name`` (imported now if it was not yet)."""
        module, _, attr = self.entries[self.check(name)].partition(":")
        return getattr(importlib.import_module(module), attr)


DATA_SOURCES = Registry("data source", {
    "grammar": "ouroboros.data.sources:GrammarSource",
    "arithmetic": "ouroboros.data.sources:ArithmeticSource",
    "files": "ouroboros.data.sources:FileSource",
    "hf": "ouroboros.data.sources:HFDatasetSource",
})
TASKS = Registry("task", {
    "lm": "ouroboros.tasks.lm:LanguageModelling",
    "summarization": "ouroboros.tasks.conditional:Summarization",
    "translation": "ouroboros.tasks.conditional:Translation",
    "arithmetic": "ouroboros.tasks.conditional:Arithmetic",
    "gsm8k": "ouroboros.tasks.conditional:GSM8K",
    "classification": "ouroboros.tasks.conditional:Classification",
})
MODELS = Registry("model", {
    "tiny-gpt2": "ouroboros.models.tiny:TinyGPT2",
    "hf-causal": "ouroboros.models.pretrained:HFCausal",
    "hf-seq2seq": "ouroboros.models.pretrained:HFSeq2Seq",
})
BACKENDS = Registry("generation backend", {
    "hf": "ouroboros.generation.hf:HFBackend",
    "vllm": "ouroboros.generation.vllm_backend:VLLMBackend",
})
POLICIES = Registry("data policy", {
    "replace": "ouroboros.policies.core:replace",
    "accumulate": "ouroboros.policies.core:accumulate",
    "accumulate-subsample": "ouroboros.policies.core:accumulate_subsample",
    "mix": "ouroboros.policies.core:mix",
    "fresh": "ouroboros.policies.core:fresh",
})
METRICS = Registry("metric", {
    "perplexity": "ouroboros.metrics.perplexity:perplexity",
    "ground-truth": "ouroboros.metrics.groundtruth:ground_truth",
    "diversity": "ouroboros.metrics.diversity:diversity",
    "rouge": "ouroboros.metrics.references:rouge",
    "bleu": "ouroboros.metrics.references:bleu",
    "lengths": "ouroboros.metrics.references:lengths",
    "tails": "ouroboros.metrics.tails:tails",
    "reference-perplexity": "ouroboros.metrics.tails:reference_perplexity",
    "traits": "ouroboros.metrics.traits:traits",
    "accuracy": "ouroboros.metrics.accuracy:accuracy",
})

ALL: dict[str, Registry] = {r.kind: r for r in
                            (DATA_SOURCES, TASKS, MODELS, BACKENDS, POLICIES, METRICS)}
