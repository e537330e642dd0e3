"""Where crossenc keeps what it builds: the user cache (demo model, exports, autotune profiles)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def cache_dir() -> Path:
    """``$CROSSENC_CACHE`` or ``$XDG_CACHE_HOME/crossenc`` (default ``~/.cache/crossenc``)."""
    explicit = os.environ.get("CROSSENC_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossenc"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output_dir(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to ``target``, on error delete it.

    A crash or kill midway leaves only a dot-prefixed temp folder, never a ``target`` that
    loads as valid. An existing ``target`` is replaced only after the new one is complete;
    with ``overwrite=False`` an existing one (also one that appeared meanwhile, e.g. built by
    another process) raises FileExistsError and is left as it is.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} appeared while it was being written; keeping that one")
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
