"""What a stage reads besides its input stages, identified by content: a local file or model
folder by the SHA-256 of its bytes, a Hugging Face Hub name by the commit it points to when the
study is planned (and the loaders are then given that commit, so a later push to the Hub
changes nothing). Both enter the fingerprints of the stages that read them: re-saving a model
folder with other weights, or flipping a trait file's labels, re-runs what they change.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cache
from pathlib import Path

from ouroboros.config import StudyConfig


@cache
def _digest(path: str, stat: tuple) -> str:
    """SHA-256 of a file or of a folder (every file's relative path and bytes, in order);
    ``stat`` (size and modification time) keys the cache, so a changed file is read again."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(p) if f != p else ''}\0".encode())
        with open(f, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def local_digest(ref: str | None) -> str | None:
    """The content hash of a local file or folder (None: not a local path)."""
    if not ref:
        return None
    p = Path(ref).expanduser()
    if not (p.is_file() or p.is_dir()):
        return None
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    stat = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _digest(str(p.resolve()), stat)


@cache
def hub_revision(name: str, cache_dir: str | None = None, revision: str | None = None
                 ) -> str | None:
    """The commit a Hub model name (at a branch or tag ``revision``; None: main) points to
    now: asked of the Hub where it can be reached, else the commit the local cache holds for
    it (None: neither; loading will fail too)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE
    if not HF_HUB_OFFLINE and not os.environ.get("TRANSFORMERS_OFFLINE"):
        try:
            from huggingface_hub import HfApi
            return HfApi().model_info(name, revision=revision, timeout=10).sha
        except Exception:  # no network, unknown name, gated: fall back to the cache
            pass
    try:
        return Path(snapshot_download(name, revision=revision, local_files_only=True,
                                      cache_dir=cache_dir)).name
    except Exception:
        return None


def _pin(ref: str | None, revision: str | None) -> str | None:
    """A Hub name's commit: ``revision`` where it is one already (40 hex digits), else the
    commit its branch or tag (default main) points to now; None for a local folder."""
    if not ref or local_digest(ref) is not None:
        return revision
    if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    return hub_revision(ref, None, revision) or revision


def pinned(cfg: StudyConfig) -> StudyConfig:
    """The study with every Hub model name's revision filled in (the study's model, each
    generator's, a trait's and a model-verifier's)."""
    model = cfg.model.model_copy(update={"revision": _pin(cfg.model.pretrained,
                                                          cfg.model.revision)})
    traits = [t.model_copy(update={"revision": _pin(t.model, t.revision)})
              for t in cfg.metrics.traits]

    def steps(curation):
        return None if curation is None else [
            s.model_copy(update={"revision": _pin(s.model, s.revision)}) for s in curation]
    policies = [p.model_copy(update={
        "curation": steps(p.curation),
        "generators": None if p.generators is None else [
            g.model_copy(update={"revision": _pin(g.pretrained, g.revision)})
            for g in p.generators],
        "teacher": None if p.teacher is None else p.teacher.model_copy(update={
            "revision": _pin(p.teacher.model, p.teacher.revision)})}) for p in cfg.policies]
    return cfg.model_copy(update={
        "model": model, "policies": policies, "curation": steps(cfg.curation),
        "metrics": cfg.metrics.model_copy(update={"traits": traits})})


def model_files(model: dict, key: str) -> dict:
    """The content of a model's local pretrained folder, if it has one (``key``: where the
    folder's name stands in the stage's spec)."""
    digest = local_digest(model.get("pretrained"))
    return {"files": {key: digest}} if digest else {}


def trait_files(cfg: StudyConfig) -> dict:
    """The content of every local file or folder a trait scorer reads."""
    files = {f"metrics.traits.{i}.{key}": digest for i, t in enumerate(cfg.metrics.traits)
             for key in ("file", "model") if (digest := local_digest(getattr(t, key)))}
    return {"files": files} if files else {}


def teacher_files(teacher) -> dict:
    """The content of a teacher's local model folder, if it has one."""
    digest = local_digest(teacher.model)
    return {"files": {"teacher.model": digest}} if digest else {}


def curation_files(steps: list) -> dict:
    """The content of every local model folder a curation step reads."""
    files = {f"curation.{i}.model": digest for i, s in enumerate(steps)
             if (digest := local_digest(s.model))}
    return {"files": files} if files else {}


class InputChanged(ValueError):
    """A file a stage reads changed between planning and building."""


def _at(spec: dict, dotted: str):
    node = spec
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def check_files(spec: dict) -> None:
    """Refuse to build a stage whose input files (``spec["files"]``: dotted path in the spec
    -> SHA-256 at plan time) are no longer what its fingerprint names: a model folder re-saved
    or a trait file edited while the run was going."""
    for key, digest in (spec.get("files") or {}).items():
        path = _at(spec, key)
        if local_digest(path) != digest:
            raise InputChanged(f"{key}: {path} changed since this run was planned; run the "
                               f"same command again (the stages that read it are rebuilt)")
