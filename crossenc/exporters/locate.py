"""Load or export? Find an existing artifact for (model, format, variant), else say where to write one."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossenc.errors import VerificationFailed
from crossenc.exporters.base import failed_path, move_folder
from crossenc.manifest import MANIFEST_NAME, read_manifest, source_weights_hash, unverified_error
from crossenc.model_source import ModelSource
from crossenc.paths import cache_dir

if TYPE_CHECKING:
    from crossenc.backends import LoadRequest

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


def matching_manifest(folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a complete export in ``folder`` made with ``config``; None when there is none."""
    manifest = read_manifest(folder) if has_complete_export(folder) else None
    if manifest is None or manifest.get("export_config", {}).get("config") != config:
        return None
    return manifest


def load_refusal(request: LoadRequest, backend: str, instead: str) -> str:
    """The lead of a load-time refusal of an unverified export: the backend, variant and family, and what to use
    instead (``instead``, e.g. "variant='bf16' or 'fp32'")."""
    family = getattr(request.config, "model_type", None) or request.source.name
    return (f"{backend} variant {request.variant!r} refused for this '{family}' checkpoint (use {instead} "
            "instead, or other export settings in backend_kwargs={'export': {...}})")


def ensure_export(
    folder: Path, config: dict[str, Any], export: Callable[[], object], allow_unverified: bool, label: str,
    refusal: str = "",
) -> dict[str, Any]:
    """The manifest of a complete export in ``folder`` made with ``config``, exporting first if needed.

    An export that fails verification leaves ``folder`` untouched and is kept at ``<folder>.failed``
    (crossenc.exporters.base.write_export); it is not repeated while that folder holds the failure
    of the same ``config``. A failed export, fresh or kept, and a cached one whose manifest says it
    is unverified raise VerificationFailed unless ``allow_unverified``: then the failed export is
    moved into ``folder`` and used, with a warning. ``refusal`` (see load_refusal) leads that
    VerificationFailed's message, so a load names the family and what to use instead.
    """
    try:
        return _ensure_export(folder, config, export, allow_unverified, label)
    except VerificationFailed as error:
        if not refusal:
            raise
        raise VerificationFailed(f"{refusal}: {error}", error.report, error.path) from None


def _ensure_export(
    folder: Path, config: dict[str, Any], export: Callable[[], object], allow_unverified: bool, label: str
) -> dict[str, Any]:
    manifest = matching_manifest(folder, config)
    failed = failed_path(folder)
    if manifest is None and matching_manifest(failed, config) is None:
        # the folder only at -vv: the cache path alone would overrun an 80-column line (README names it)
        logger.info("building the %s ...", label, extra={"crossenc_transient": True})
        logger.debug("%s folder: %s", label, folder)
        started = time.perf_counter()
        try:
            export()
        except VerificationFailed:
            if not allow_unverified:
                raise
        manifest = matching_manifest(folder, config)
        seconds, built = time.perf_counter() - started, manifest or matching_manifest(failed, config)
        logger.info("%s: %.0f s, %s", label, seconds, verification_note(built), extra={"export_seconds": seconds})
    if manifest is None:  # this config failed verification: the artifact is at <folder>.failed
        kept = matching_manifest(failed, config)
        if kept is None:
            raise RuntimeError(f"exporting the {label} into {folder} left no complete export there or in {failed}")
        if not allow_unverified:
            raise unverified_error(failed, kept, f"the {label} kept for inspection in",
                                   f"delete {failed} or change the export settings to export again")
        logger.warning("using the unverified %s from %s (allow_unverified=True)", label, failed)
        try:
            move_folder(failed, folder)
        except FileNotFoundError:  # another process claimed it first and moves it in
            pass
        manifest = read_manifest(folder)
        if manifest is None:
            raise RuntimeError(f"{failed} is being moved into {folder} by another process; load again")
    if not manifest.get("verified") and not allow_unverified:
        remedy = ("export it with verification (the export option verify=True) instead"
                  if not manifest.get("verification") else "delete it to re-export")
        raise unverified_error(folder, manifest, f"the cached {label}", remedy)
    return manifest


def verification_note(manifest: dict[str, Any] | None) -> str:
    """What an export's manifest says of its verification, in a few words (for progress lines)."""
    report = (manifest or {}).get("verification")
    if not report:
        return "not verified (verification skipped)"
    numbers = f"max abs error {report['max_abs_error']:.2g}, Spearman {report['spearman']:.4f}"
    if report.get("passed"):
        return f"verified ({numbers})"
    return f"FAILED verification: {'; '.join(report['failures'])} ({numbers})"
