"""One module per stage kind: each builds a stage from its spec and its input folders alone
(``job.Job``), so any process that sees the run directory can build it."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ouroboros.experiment.builders.job import Job

BUILDERS = {
    "data": "data:build_data", "pool": "data:build_pool", "test": "data:build_test",
    "tokenizer": "tokenizer:build_tokenizer", "trainset": "trainset:build_trainset",
    "train": "train:build_train", "generate": "generate:build_generate",
    "mixture": "generate:build_mixture", "curate": "curate:build_curate",
    "evaluate": "evaluate:build_evaluate", "slice": "slice:build_slice",
    "augment": "augment:build_augment", "backtranslate": "backtranslate:build_backtranslate",
}


def build(job: Job, out: Path) -> dict:
    """Build ``job``'s stage into the folder ``out``; returns what its record keeps as info."""
    module, _, name = BUILDERS[job.stage.kind].partition(":")
    builder = getattr(importlib.import_module(f"ouroboros.experiment.builders.{module}"), name)
    return builder(job, out)


def configure_torch(threads: int) -> None:
    """Threads and deterministic kernels for reproducible stages; quiet library logs. Every
    executor runs it before a build; it lives here, in the package above every builder, so
    that it is part of every stage kind's code identity (experiment/versions.py)."""
    import torch
    from transformers.utils import logging as hf_logging
    # cuBLAS needs a fixed workspace for deterministic matrix products (set before CUDA starts).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would drown the stage log
