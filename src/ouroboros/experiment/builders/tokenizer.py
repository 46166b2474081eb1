"""The tokenizer stage: learned from a seed's real training split, frozen for every generation."""

from __future__ import annotations

from pathlib import Path

from ouroboros import registry
from ouroboros.config import ModelConfig
from ouroboros.experiment.builders.job import Job

SPEC_FIELDS = ("tokenizer", "vocab_size", "pretrained", "revision", "trust_remote_code")


def build_tokenizer(job: Job, out: Path) -> dict:
    """The tokenizer of the model family the spec names, from the real training split only."""
    train = job.real("train")
    texts = [job.task.context(e["source"]) for e in train if e["source"]]
    spec = job.spec
    given = {k: spec[k] for k in SPEC_FIELDS if spec.get(k) is not None}
    model = ModelConfig.model_validate({"name": spec["model"], **given})
    lexicon = job.truth.lexicon if spec.get("vocabulary") == "lexicon" else None
    tokenizer = registry.MODELS.get(spec["model"])().build_tokenizer(
        model, texts + [e["target"] for e in train], lexicon)
    tokenizer.save_pretrained(out)
    return {"vocab_size": len(tokenizer)}
