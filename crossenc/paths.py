"""Where crossenc keeps what it builds: the user cache (demo model, exports, autotune profiles)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def cache_dir() -> Path:
    """``$CROSSENC_CACHE`` or ``$XDG_CACHE_HOME/crossenc`` (default ``~/.cache/crossenc``)."""
    explicit = os.environ.get("CROSSENC_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossenc"
