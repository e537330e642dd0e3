"""Load or export? Find an existing artifact for (model, format, variant), else say where to write one."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossenc.exporters.base import VerificationFailed
from crossenc.exporters.manifest import MANIFEST_NAME, read_manifest, source_weights_hash
from crossenc.exporters.verify import VerificationReport
from crossenc.model_source import ModelSource
from crossenc.paths import cache_dir

logger = logging.getLogger(__name__)


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


def ensure_export(
    folder: Path, config: dict[str, Any], export: Callable[[], object], allow_unverified: bool, label: str
) -> dict[str, Any]:
    """The manifest of a complete export in ``folder`` made with ``config``, exporting first if needed.

    A fresh export that fails verification, or a cached one whose manifest says it failed,
    raises VerificationFailed unless ``allow_unverified`` (then it is used, with a warning).
    """
    manifest = read_manifest(folder) if has_complete_export(folder) else None
    if manifest is None or manifest.get("export_config", {}).get("config") != config:
        logger.info("exporting %s into %s", label, folder)
        try:
            export()
        except VerificationFailed as failure:
            if not allow_unverified:
                raise
            logger.warning("using an unverified %s (allow_unverified=True): %s", label, failure)
        return read_manifest(folder) or {}
    if not manifest.get("verified") and not allow_unverified:
        fields = {field.name for field in dataclasses.fields(VerificationReport)}
        verification = {k: v for k, v in (manifest.get("verification") or {}).items() if k in fields}
        report = VerificationReport(**verification) if verification else None
        failures = "; ".join(report.failures) if report else "verification was skipped"
        raise VerificationFailed(
            f"the cached {label} {folder} failed verification ({failures}); delete it to re-export, or pass "
            "backend_kwargs={'allow_unverified': True} to use it anyway",
            report,  # type: ignore[arg-type]
            folder,
        )
    return manifest
