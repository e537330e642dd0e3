"""Load or export? Find an existing artifact for (model, format, variant), else say where to write one."""

from __future__ import annotations

import re
from pathlib import Path

from crossenc.exporters.manifest import MANIFEST_NAME, source_weights_hash
from crossenc.model_source import ModelSource
from crossenc.paths import cache_dir


def export_cache_dir(source: ModelSource, artifact_format: str, variant: str) -> Path:
    """``<cache>/exports/<model-slug>-<weights hash>/<format>-<variant>``: one folder per artifact."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.path.name if source.path.is_dir() else source.name).strip("-")
    weights = source_weights_hash(source.path)[:12]
    return cache_dir() / "exports" / f"{slug}-{weights}" / f"{artifact_format}-{variant}"


def find_existing(folder: Path, candidates: list[str]) -> Path | None:
    """First of ``candidates`` (relative paths) that exists under ``folder``."""
    for relative in candidates:
        path = folder / relative
        if path.is_file():
            return path
    return None


def has_complete_export(folder: Path) -> bool:
    """A crossenc export folder is complete only once its manifest exists (written last, then renamed)."""
    return (folder / MANIFEST_NAME).is_file()
