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


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place: a reader sees the old
    file or the whole new one, and a failed write leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A private temporary sibling of ``target`` (same filesystem), deleted when the block ends
    unless :func:`install_dir` moved it away. A crash leaves only this dot-prefixed folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_dir(staging: Path, target: Path, *, overwrite: bool = True, merge: bool = False) -> None:
    """Put the finished folder ``staging`` at ``target``, by renames on one filesystem.

    An existing ``target`` is replaced whole, or with ``merge`` only its entries that ``staging``
    also has (the rest stay); ``overwrite=False`` refuses an existing one with FileExistsError.
    """
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (or appeared while it was being written); keeping that one")
    if target.exists() and merge:
        for item in staging.iterdir():
            destination = target / item.name
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            os.replace(item, destination)
    elif target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, retired / target.name)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)


@contextlib.contextmanager
def atomic_output_dir(target: str | os.PathLike, overwrite: bool = True, merge: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success install it at ``target`` (:func:`install_dir`),
    on error delete it.

    A crash or kill midway never leaves a ``target`` that loads as valid. An existing ``target`` is
    replaced (or, with ``merge``, updated) only after the new one is complete; with
    ``overwrite=False`` an existing one (also one that appeared meanwhile, e.g. built by another
    process) raises FileExistsError and is left as it is.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    with staging_dir(target) as staging:
        yield staging
        install_dir(staging, target, overwrite=overwrite, merge=merge)
