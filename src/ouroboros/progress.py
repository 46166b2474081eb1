"""When to draw progress bars: asked for, and only on a terminal (logs stay readable)."""

from __future__ import annotations

import sys


def show_progress(requested: bool) -> bool:
    """Progress bars are drawn when requested and standard error is a terminal."""
    return requested and sys.stderr.isatty()
