"""The run directory: lock, resolved config, manifest, tidy metrics and moved-aside stages."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from ouroboros import __version__
from ouroboros.atomic import refuse_links
from ouroboros.experiment.stages import write_atomic

METRIC_COLUMNS = ["cell", "policy", "seed", "generation", "metric", "value", "higher_is_better",
                  "signature"]
PACKAGES = ["torch", "transformers", "tokenizers", "safetensors", "numpy", "pydantic",
            "matplotlib", "PyYAML", "tqdm", "sacrebleu", "rouge-score", "scikit-learn",
            "datasets", "peft", "vaderSentiment"]


class RunLockedError(RuntimeError):
    """Another process is writing the run directory."""


def _flock_patiently(f, tries: int = 20) -> None:
    """Take the exclusive lock, waiting up to a second for a shared one (``status`` probing
    for a live run holds it for microseconds); BlockingIOError if a writer holds it."""
    for attempt in range(tries):
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == tries - 1:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock; a second writer gets a clear error, not corruption."""
    run_dir.mkdir(parents=True, exist_ok=True)
    refuse_links(run_dir)
    # O_NOFOLLOW: a link planted as .lock is refused, never truncated through.
    f = os.fdopen(os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644),
                  "r+")
    try:
        _flock_patiently(f)
    except BlockingIOError:
        f.seek(0)
        owner = f.read().strip() or "unknown"
        f.close()
        raise RunLockedError(f"run directory {run_dir} is in use by another ouroboros process "
                             f"(pid {owner}); wait for it or stop it") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def lock_holder(run_dir: Path) -> str | None:
    """The pid of the live ouroboros process writing the run directory (None: none is; a
    process that died, even by SIGKILL, holds no lock)."""
    path = Path(run_dir) / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read(32).strip() or "unknown"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _git_commit() -> str | None:
    """The commit of the ouroboros source checkout, if it is one ("+dirty": the package's
    tracked files differ from it)."""
    here = Path(__file__).resolve().parents[1]  # the whole package, not one subpackage
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    # --no-optional-locks: reading the status must not rewrite the checkout's .git/index.
    dirty = subprocess.run(["git", "--no-optional-locks", "-C", str(here), "status", "--porcelain",
                            "--untracked-files=no", "--", "."],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def provenance(device: str = "cpu", threads: int | None = None,
               precision: str | None = None) -> dict:
    """What builds results in this process: ouroboros version and commit, package versions,
    Python, platform, device, threads and training precision (recorded in every stage's
    completion record)."""
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    out = {"ouroboros": __version__, "git_commit": _git_commit(), "python": sys.version,
           "platform": platform.platform(), "machine": platform.machine(),
           "cpu_count": os.cpu_count(), "packages": versions, "device": device,
           "threads": threads, "precision": precision}
    if device.startswith("cuda"):
        import torch
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        out["cuda"] = torch.version.cuda
    return out


def manifest(run_dir: Path, prov: dict) -> dict:
    """This invocation (provenance, command line, start time), with every earlier invocation
    of the run directory kept under ``history``."""
    path = Path(run_dir) / "manifest.json"
    earlier: dict = {}
    if path.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            earlier = json.loads(path.read_text())
    history = earlier.pop("history", []) + ([earlier] if earlier else [])
    return {**prov, "command": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "history": history}


def write_config(run_dir: Path, text: str) -> None:
    """Write ``config.yaml``; a different earlier config is moved aside first, not lost."""
    path = run_dir / "config.yaml"
    if path.is_file() and path.read_text() != text:
        move_aside(run_dir, [path])
    write_atomic(path, text)


def move_aside(run_dir: Path, paths: list[Path]) -> Path | None:
    """Move files or folders under ``_stale/<time>/`` keeping their relative paths."""
    if not paths:
        return None
    dest_root = run_dir / "_stale" / time.strftime("%Y%m%d-%H%M%S")
    for p in paths:
        dest = dest_root / p.relative_to(run_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(p), str(dest))
    return dest_root


def stale_stages(run_dir: Path, planned: set[str]) -> list[Path]:
    """Finished stage folders not in the current plan, and leftovers of crashed builds."""
    root = run_dir / "stages"
    if not root.is_dir():
        return []
    return [d for kind in sorted(root.iterdir()) if kind.is_dir()
            for d in sorted(kind.iterdir())
            if d.is_dir() and str(d.relative_to(run_dir)) not in planned]


def write_table(path: Path, columns: list[str], rows: list[dict]) -> Path:
    """A CSV file with a header, written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue())
    return path


def write_metrics(run_dir: Path, rows: list[dict]) -> Path:
    """Write the tidy ``metrics.csv`` (one row per cell, seed, generation, metric)."""
    return write_table(run_dir / "metrics.csv", METRIC_COLUMNS, rows)


def write_json(path: Path, data: dict) -> None:
    """Pretty JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2, default=str))
