"""Stages: immutable folders named by fingerprint, whose completion record is written last.

A stage is built in a temporary folder; its ``_complete.json`` is written last, then the folder
is renamed into place. A folder with a record is finished; anything else is a leftover of a
crash and is rebuilt. The fingerprint hashes everything that changes the stage's result,
including its inputs' fingerprints, so a changed setting re-runs exactly what depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ouroboros.atomic import write_atomic
from ouroboros.experiment.versions import version

RECORD = "_complete.json"


def _without_nulls(value: Any) -> Any:
    """``value`` with every None-valued mapping entry removed, recursively.

    A setting left at None means "off / not used", exactly as if the field did not exist; so a
    new optional config field does not change the fingerprints of studies that do not use it.
    """
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def fingerprint(spec: Any) -> str:
    """SHA-256 of the canonical JSON of ``spec`` (None-valued entries left out)."""
    blob = json.dumps(_without_nulls(spec), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed derived from any JSON-able parts (stable across runs and machines)."""
    return int(fingerprint(list(parts))[:8], 16) & 0x7FFFFFFF


@dataclass(eq=False)
class Stage:
    """One unit of work: its kind, a readable label, what defines it and what it reads."""

    kind: str
    label: str
    spec: dict
    deps: dict[str, Stage | list[Stage]] = field(default_factory=dict)
    # Settings that cannot change the result, so not in the fingerprint: where a server
    # generator is reached and how hard it is pushed.
    access: dict = field(default_factory=dict)

    @property
    def full_spec(self) -> dict:
        """The spec, the code version of its kind and the fingerprints of every input stage."""
        deps = {k: [s.fp for s in v] if isinstance(v, list) else v.fp
                for k, v in self.deps.items()}
        return {"kind": self.kind, "code": version(self.kind), **self.spec, "deps": deps}

    @cached_property
    def fp(self) -> str:
        """The stage's fingerprint (cached: a planned stage and its inputs never change, and
        without the cache long accumulate chains would rehash their history exponentially)."""
        return fingerprint(self.full_spec)

    @property
    def relpath(self) -> str:
        """``stages/<kind>/<label>-<fingerprint prefix>``."""
        return f"stages/{self.kind}/{self.label}-{self.fp[:12]}"


class StageStore:
    """The stages of one run directory."""

    def __init__(self, root: Path, provenance: dict | None = None,
                 accept_rebuilt: bool = False) -> None:
        self.root = Path(root)
        self.provenance = provenance or {}  # what built the stages (versions, device, commit)
        self.accept_rebuilt = accept_rebuilt  # runtime.accept_rebuilt_weights

    def path(self, stage: Stage) -> Path:
        """Where the finished stage lives."""
        return self.root / stage.relpath

    def record(self, stage: Stage) -> dict | None:
        """The completion record if the stage is finished with this fingerprint, else None."""
        f = self.path(stage) / RECORD
        if not f.is_file():
            return None
        try:
            rec = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return None  # cut short or hand-edited: never trusted, the stage is rebuilt
        return rec if isinstance(rec, dict) and rec.get("fingerprint") == stage.fp else None

    def is_done(self, stage: Stage) -> bool:
        """Whether the stage is finished."""
        return self.record(stage) is not None

    def is_pruned(self, stage: Stage) -> bool:
        """Whether the stage is finished but its weights were deleted (keep_checkpoints)."""
        record = self.record(stage)
        return bool(record and record.get("pruned"))

    def weights_sha256(self, folder: Path) -> str | None:
        """The SHA-256 of a stage folder's weights (``model/model.safetensors``), if any."""
        path = Path(folder) / "model" / "model.safetensors"
        if not path.is_file():
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def _same_weights(self, stage: Stage, deleted: dict, built: Path) -> bool | None:
        """Whether a rebuilt model is the deleted one (None: no hash to compare). It must be,
        since the stages built on the deleted one are kept, unless accept_rebuilt."""
        before = deleted["pruned"].get("weights_sha256")
        if before is None:
            return None
        if self.weights_sha256(built) == before:
            return True
        where = (f"built on {_where(deleted.get('provenance') or {})}, now "
                 f"{_where(self.provenance)}")
        if self.accept_rebuilt:
            print(f"note: {stage.kind} {stage.label}: the rebuilt model differs from the "
                  f"deleted one ({where}); used anyway (runtime.accept_rebuilt_weights)",
                  flush=True)
            return False
        raise RebuildMismatch(
            f"{stage.kind} {stage.label}: the model rebuilt for keep_checkpoints=needed differs "
            f"from the deleted one ({where}), and stages built on the deleted weights are kept. "
            f"Resume with the runtime.device and runtime.threads it was built with, or, where "
            f"training is not bit-reproducible (some CUDA kernels), with "
            f"runtime.accept_rebuilt_weights=true to use the new weights anyway")

    def prune(self, stage: Stage, parts: tuple[str, ...] = ("model",)) -> int:
        """Delete the weights of a finished stage and return the bytes freed. The record is
        marked first, so a crash in between leaves a stage known to lack its weights, which a
        plan that reads them builds again."""
        record = self.record(stage)
        if record is None or record.get("pruned"):
            return 0
        folder = self.path(stage)
        freed = sum(f.stat().st_size for part in parts if (folder / part).is_dir()
                    for f in (folder / part).rglob("*") if f.is_file())
        record["pruned"] = {"at": time.time(), "removed": list(parts), "bytes": freed,
                            "weights_sha256": self.weights_sha256(folder)}
        write_atomic(folder / RECORD, json.dumps(record, indent=2, default=str))
        for part in parts:
            shutil.rmtree(folder / part, ignore_errors=True)
        return freed

    def run(self, stage: Stage, build: Callable[[Path], dict | None],
            conditions: dict | None = None) -> bool:
        """Build the stage unless finished (a pruned stage is built again: something reads
        its weights); returns True if it was built now. ``conditions``: the runtime settings
        that change its bits (conditions.py), kept in its record."""
        final = self.path(stage)
        old = final.parent / f".old-{final.name}"
        if old.exists():  # a rebuild killed while swapping folders
            if final.exists():
                shutil.rmtree(old)  # the rebuild is in place
            else:
                os.rename(old, final)  # back to the pruned stage, hash and all
        record = self.record(stage)
        if record is not None and not record.get("pruned"):
            return False
        deleted = record  # a pruned stage: its record stays until the rebuild is in place
        if final.exists() and deleted is None:  # a folder without a valid record: never trust it
            shutil.rmtree(final)
        tmp = final.parent / f".tmp-{final.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        started = time.time()
        try:
            info = build(tmp) or {}
            same = self._same_weights(stage, deleted, tmp) if deleted else None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed stage leaves nothing behind
            raise
        record = {"kind": stage.kind, "label": stage.label, "fingerprint": stage.fp,
                  "spec": stage.full_spec, "started": started, "seconds": time.time() - started,
                  "provenance": self.provenance, "conditions": conditions or {}, "info": info}
        if deleted:  # same_weights: null where the pruned record had no hash to compare
            record["rebuilt"] = {"pruned": deleted["pruned"], "same_weights": same}
        write_atomic(tmp / RECORD, json.dumps(record, indent=2, default=str))
        if deleted:  # the pruned folder goes only once its replacement is complete
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
        return True


class RebuildMismatch(RuntimeError):
    """A model deleted by keep_checkpoints=needed came back with other weights."""


def _where(provenance: dict) -> str:
    return (f"{provenance.get('device', '?')}, {provenance.get('threads', '?')} thread(s), "
            f"torch {provenance.get('packages', {}).get('torch', '?')}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON Lines file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
