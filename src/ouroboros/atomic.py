"""Atomic file writes: readers see the old content or the new, never a part."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part; a failed
    write (a full disk, say) removes its temporary file and leaves the old content."""
    # A name of its own per writer (processes on several nodes included): two writers of one
    # file (the same answer cached by two stages at once) must not rename each other's
    # temporary away.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LinkInRunDir(ValueError):
    """A run directory holds a symbolic link, which a write could follow out of it."""


def refuse_links(root: Path) -> None:
    """Refuse a run directory with a symbolic link anywhere inside it: ouroboros writes, moves
    and truncates files there, and a planted link (``.lock``, a stage folder, ``report/``,
    ``_stale/``) would take those writes outside it. The directory itself may be a link.
    Not looked into: ``trackers/wandb``, W&B's own folder (its service links its log there);
    ouroboros writes nothing in it."""
    root = Path(root)
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):  # links to folders are listed, never entered
        if Path(folder) == root / "trackers" and "wandb" in dirs:
            if (root / "trackers" / "wandb").is_symlink():
                raise LinkInRunDir(f"{root / 'trackers' / 'wandb'}: a symbolic link inside "
                                   f"the run directory {root}: remove it")
            dirs.remove("wandb")
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                raise LinkInRunDir(
                    f"{path}: a symbolic link inside the run directory {root}; ouroboros never "
                    f"follows one out of it: remove the link (or use another run directory)")
