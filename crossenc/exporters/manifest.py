"""The manifest beside every artifact: provenance, config, file hashes, verification report."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

MANIFEST_NAME = "crossenc_manifest.json"
MANIFEST_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".xml", ".engine", ".plan")

logger = logging.getLogger(__name__)


class ArtifactIntegrityError(ValueError):
    """A file of an exported artifact is missing or differs from its manifest hash."""


class UnverifiedArtifactWarning(UserWarning):
    """The artifact's manifest says it failed (or skipped) verification."""


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative posix paths), the manifest itself excluded."""
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


def source_weights_hash(model_dir: Path) -> str:
    """One hash over the checkpoint's weight files: identifies *which* weights were exported."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and path.suffix in (".safetensors", ".bin"):
            digest.update(path.name.encode())
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def tool_versions(*modules: str) -> dict[str, str]:
    import importlib

    versions = {}
    for name in ("crossenc", "torch", "transformers", *modules):
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "unknown")
        except ImportError:
            continue
    return versions


def write_manifest(
    folder: Path,
    *,
    artifact_format: str,
    variant: str,
    source_name: str,
    source_revision: str | None,
    source_dir: Path,
    export_config: dict[str, Any],
    tools: dict[str, str],
    verification: dict[str, Any] | None,
) -> dict[str, Any]:
    """Hash every file in ``folder`` and write the manifest there. Returns it."""
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "format": artifact_format,
        "variant": variant,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "model": source_name,
            "revision": source_revision,
            "weights_sha256": source_weights_hash(source_dir),
        },
        "export_config": export_config,
        "tools": tools,
        "verified": bool(verification and verification.get("passed")),
        "verification": verification,
        "files": hash_files(folder),
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False))
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactIntegrityError(f"{path} is not valid JSON ({error.msg}); re-export the model") from None


def check_manifest(folder: Path, files: list[str] | None = None, warn_unverified: bool = True) -> dict[str, Any] | None:
    """Verify hashes of ``files`` (default: every file listed) against the manifest, if one exists.

    Raises ArtifactIntegrityError naming the first missing or modified file; warns when the
    artifact was not verified. Returns the manifest (None when the folder has none).
    """
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    listed: dict[str, str] = manifest.get("files", {})
    for name in files if files is not None else list(listed):
        if name not in listed:
            raise ArtifactIntegrityError(f"{folder / name} is not listed in {MANIFEST_NAME}; re-export the model")
        path = folder / name
        if not path.exists():
            raise ArtifactIntegrityError(f"{path} is listed in {MANIFEST_NAME} but missing")
        if sha256_file(path) != listed[name]:
            raise ArtifactIntegrityError(
                f"{path} does not match its sha256 in {MANIFEST_NAME}: the file was modified or truncated"
            )
    if warn_unverified and not manifest.get("verified", False):
        numbers = (manifest.get("verification") or {}).get("failures") or ["verification was skipped"]
        warnings.warn(
            f"{folder} was exported without passing verification ({'; '.join(numbers)})",
            UnverifiedArtifactWarning,
            stacklevel=3,
        )
    return manifest
