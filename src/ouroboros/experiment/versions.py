"""Code versions of the stage kinds: a stage's fingerprint holds its kind's version, so a change
to the code that makes a kind's results invalidates the finished stages of that kind (and,
through fingerprints, everything built on them), never silently reusing stale results.

``CODE`` maps each kind to (version, the code its results depend on). When that code changes,
``tests/unit/test_versions.py`` fails until the change is acknowledged: bump the version if
results can change, then record the new code hashes with
``python -m ouroboros.experiment.versions > tests/unit/stage_code.json``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json

_B = "ouroboros.experiment.builders"
_TASKS = ["ouroboros.tasks", "ouroboros.tasks.lm", "ouroboros.tasks.conditional"]
_JOB = [f"{_B}.job:data_stage", f"{_B}.job:make_source", f"{_B}.job:Job.task_config",
        f"{_B}.job:Job.task", f"{_B}.job:Job.real", f"{_B}.job:Job.checked_source"]
_DATA = ["ouroboros.data.sources", "ouroboros.data.files", "ouroboros.data.grammar",
         "ouroboros.data.lexicon", *_TASKS, *_JOB, f"{_B}.data:real_splits"]
_MODELS = ["ouroboros.models.tokenizer", "ouroboros.models.tiny", "ouroboros.models.pretrained",
           "ouroboros.models.encoding", "ouroboros.models.scoring",
           "ouroboros.models.checkpoint", *_JOB, f"{_B}.job:Job.encoder",
           f"{_B}.job:Job.model_encoder"]
_SEEDS = ["ouroboros.experiment.stages:derive_seed", f"{_B}.job:stream"]
_GENERATE = ["ouroboros.generation.hf", "ouroboros.generation.sampling", f"{_B}.job:Job.backend",
             "ouroboros.generation.vllm_backend", "ouroboros.generation.vllm_worker",
             f"{_B}.generate:sample", f"{_B}.job:Job.prompt_ids", "ouroboros.generation.server",
             f"{_B}.generate:ask_server"]
_QUALITY = [f"{_B}.job:Job.quality_scorer"]

CODE: dict[str, tuple[int, list[str]]] = {
    "data": (3, _DATA + [f"{_B}.data:build_data", f"{_B}.data:_splits"]),
    "pool": (2, _DATA + [f"{_B}.data:build_pool", f"{_B}.data:_splits"]),
    "tokenizer": (2, _MODELS + _TASKS + [f"{_B}.tokenizer"]),
    "trainset": (2, _DATA + _SEEDS + ["ouroboros.policies.core", f"{_B}.trainset"]),
    "train": (2, _MODELS + _TASKS + _SEEDS + ["ouroboros.training.trainer", f"{_B}.train"]),
    "generate": (4, _MODELS + _TASKS + _SEEDS + _GENERATE + [f"{_B}.generate:build_generate"]),
    "mixture": (1, [f"{_B}.generate:build_mixture"]),
    "curate": (3, _MODELS + _TASKS + _SEEDS + _GENERATE + _QUALITY + [
        "ouroboros.curation.steps", "ouroboros.curation.classifiers", "ouroboros.splits",
        f"{_B}.curate"]),
    # Metric modules carry their own VERSION in the evaluate spec; this covers the rest,
    # including what every evaluation computes whatever metrics are configured.
    "evaluate": (3, _MODELS + _TASKS + _GENERATE + [
        "ouroboros.metrics.signature", "ouroboros.metrics.perplexity:test_items",
        "ouroboros.metrics.perplexity:test_nll",
        "ouroboros.metrics.references:unfinished", f"{_B}.evaluate"]),
    "slice": (1, _MODELS + _TASKS + _QUALITY + ["ouroboros.data.grammar",
                                                 "ouroboros.metrics.slices", f"{_B}.slice"]),
}


def version(kind: str) -> int | None:
    """The code version of a stage kind (None for a kind not built by a study)."""
    return CODE[kind][0] if kind in CODE else None


def _source(ref: str) -> str:
    """The source text of a module, or of ``module:Qualified.name``."""
    module, _, name = ref.partition(":")
    obj = importlib.import_module(module)
    for part in name.split(".") if name else []:
        obj = getattr(obj, part)
    obj = getattr(obj, "func", getattr(obj, "fget", obj))  # cached_property, property
    return inspect.getsource(obj)


def code_hashes() -> dict[str, dict]:
    """Per kind: its version and the SHA-256 of the code its results depend on."""
    out = {}
    for kind, (v, refs) in sorted(CODE.items()):
        digest = hashlib.sha256("\0".join(_source(r) for r in refs).encode()).hexdigest()
        out[kind] = {"version": v, "code": digest}
    return out


if __name__ == "__main__":
    print(json.dumps(code_hashes(), indent=2, sort_keys=True))
