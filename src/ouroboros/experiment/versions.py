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

_TASKS = ["ouroboros.tasks", "ouroboros.tasks.lm", "ouroboros.tasks.conditional"]
_DATA = ["ouroboros.data.sources", "ouroboros.data.files", "ouroboros.data.grammar",
         "ouroboros.data.lexicon", *_TASKS, "ouroboros.experiment.loop:real_splits"]
_MODELS = ["ouroboros.models.tokenizer", "ouroboros.models.tiny", "ouroboros.models.pretrained",
           "ouroboros.models.encoding", "ouroboros.models.scoring",
           "ouroboros.models.checkpoint", "ouroboros.experiment.loop:Runner.encoder",
           "ouroboros.experiment.loop:Runner.model_encoder"]
_SEEDS = ["ouroboros.experiment.stages:derive_seed", "ouroboros.experiment.loop:_stream"]
_GENERATE = ["ouroboros.generation.hf", "ouroboros.generation.sampling",
             "ouroboros.experiment.loop:Runner._sample",
             "ouroboros.experiment.loop:Runner.prompt_ids"]
_QUALITY = ["ouroboros.experiment.loop:Runner._quality_scorer"]

CODE: dict[str, tuple[int, list[str]]] = {
    "data": (3, _DATA + ["ouroboros.experiment.loop:Runner.build_data"]),
    "pool": (2, _DATA + ["ouroboros.experiment.loop:Runner.build_pool"]),
    "tokenizer": (2, _MODELS + _TASKS + ["ouroboros.experiment.loop:Runner.build_tokenizer"]),
    "trainset": (2, _DATA + _SEEDS + ["ouroboros.policies.core",
                                      "ouroboros.experiment.loop:Runner._fresh",
                                      "ouroboros.experiment.loop:Runner.build_trainset"]),
    "train": (2, _MODELS + _TASKS + _SEEDS + [
        "ouroboros.training.trainer", "ouroboros.experiment.loop:Runner._selection_split",
        "ouroboros.experiment.loop:Runner.build_train"]),
    "generate": (3, _MODELS + _TASKS + _SEEDS + _GENERATE + [
        "ouroboros.experiment.loop:Runner.build_generate"]),
    "mixture": (1, ["ouroboros.experiment.loop:Runner.build_mixture"]),
    "curate": (3, _MODELS + _TASKS + _SEEDS + _GENERATE + _QUALITY + [
        "ouroboros.curation.steps", "ouroboros.curation.classifiers", "ouroboros.splits",
        "ouroboros.experiment.loop:Runner.build_curate",
        "ouroboros.experiment.loop:Runner._refill"]),
    # Metric modules carry their own VERSION in the evaluate spec; this covers the rest,
    # including what every evaluation computes whatever metrics are configured.
    "evaluate": (3, _MODELS + _TASKS + _GENERATE + [
        "ouroboros.metrics.signature", "ouroboros.metrics.perplexity:test_items",
        "ouroboros.metrics.perplexity:test_nll",
        "ouroboros.metrics.references:unfinished",
        "ouroboros.experiment.loop:Runner._predict",
        "ouroboros.experiment.loop:Runner.build_evaluate"]),
    "slice": (1, _MODELS + _TASKS + _QUALITY + ["ouroboros.data.grammar",
                                                 "ouroboros.metrics.slices",
                                                 "ouroboros.experiment.loop:Runner.build_slice"]),
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
