"""What a stage reads besides its input stages, identified by content: a local file or model
folder by the SHA-256 of its bytes, a Hugging Face Hub name by the commit it points to when the
study is planned (and the loaders are then given that commit, so a later push to the Hub
changes nothing). Both enter the fingerprints of the stages that read them: re-saving a model
folder with other weights, or flipping a trait file's labels, re-runs what they change.
"""

from __future__ import annotations

import hashlib
import os
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
def hub_revision(name: str, cache_dir: str | None = None) -> str | None:
    """The commit a Hub model name points to now: asked of the Hub where it can be reached,
    else the commit the local cache holds for it (None: neither; loading will fail too)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_OFFLINE
    if not HF_HUB_OFFLINE and not os.environ.get("TRANSFORMERS_OFFLINE"):
        try:
            from huggingface_hub import HfApi
            return HfApi().model_info(name, timeout=10).sha
        except Exception:  # no network, unknown name, gated: fall back to the cache
            pass
    try:
        return Path(snapshot_download(name, local_files_only=True, cache_dir=cache_dir)).name
    except Exception:
        return None


def _pin(ref: str | None, revision: str | None) -> str | None:
    """``revision`` as given, else the resolved commit of a Hub name (None for a folder)."""
    if not ref or revision is not None or local_digest(ref) is not None:
        return revision
    return hub_revision(ref)


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
            for g in p.generators]}) for p in cfg.policies]
    return cfg.model_copy(update={
        "model": model, "policies": policies, "curation": steps(cfg.curation),
        "metrics": cfg.metrics.model_copy(update={"traits": traits})})


def model_files(model: dict) -> dict:
    """The content of a model's local pretrained folder, if it has one."""
    digest = local_digest(model.get("pretrained"))
    return {"files": {"pretrained": digest}} if digest else {}


def trait_files(cfg: StudyConfig) -> dict:
    """The content of every local file or folder a trait scorer reads."""
    files = {f"metrics.traits.{i}.{key}": digest for i, t in enumerate(cfg.metrics.traits)
             for key in ("file", "model") if (digest := local_digest(getattr(t, key)))}
    return {"files": files} if files else {}


def curation_files(steps: list) -> dict:
    """The content of every local model folder a curation step reads."""
    files = {f"curation.{i}.model": digest for i, s in enumerate(steps)
             if (digest := local_digest(s.model))}
    return {"files": files} if files else {}
