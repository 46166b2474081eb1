"""One module per stage kind: each builds a stage from its spec and its input folders alone
(``job.Job``), so any process that sees the run directory can build it."""

from __future__ import annotations

import importlib
from pathlib import Path

from ouroboros.experiment.builders.job import Job

BUILDERS = {
    "data": "data:build_data", "pool": "data:build_pool",
    "tokenizer": "tokenizer:build_tokenizer", "trainset": "trainset:build_trainset",
    "train": "train:build_train", "generate": "generate:build_generate",
    "mixture": "generate:build_mixture", "curate": "curate:build_curate",
    "evaluate": "evaluate:build_evaluate", "slice": "slice:build_slice",
}


def build(job: Job, out: Path) -> dict:
    """Build ``job``'s stage into the folder ``out``; returns what its record keeps as info."""
    module, _, name = BUILDERS[job.stage.kind].partition(":")
    builder = getattr(importlib.import_module(f"ouroboros.experiment.builders.{module}"), name)
    return builder(job, out)
