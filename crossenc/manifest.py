"""The manifest beside every artifact: provenance, config, file hashes, verification report.

Exporters write it; backends check it before running an artifact.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from crossenc.errors import ArtifactIntegrityError, UnverifiedArtifactWarning, VerificationFailed
from crossenc.quality import VerificationReport

MANIFEST_NAME = "crossenc_manifest.json"
MANIFEST_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data", ".xml", ".engine", ".plan")

logger = logging.getLogger(__name__)


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


ALLOW_UNVERIFIED = "backend_kwargs={'allow_unverified': True}"  # how a user loads an unverified artifact anyway


def verification_failures(manifest: dict[str, Any]) -> list[str]:
    """What the manifest's verification missed ("max abs error 0.3 > 0.0001", ...), or that it was skipped."""
    return (manifest.get("verification") or {}).get("failures") or ["verification was skipped"]


def unverified_error(folder: Path, manifest: dict[str, Any], what: str, remedy: str) -> VerificationFailed:
    """The VerificationFailed to raise for loading ``folder``, whose manifest says it is not verified.

    The message reads "<what> <folder> failed verification when it was exported (<missed metrics>)
    ...; <remedy>, or pass backend_kwargs={'allow_unverified': True} to use it anyway" (or "was
    exported without verification (verification was skipped)"); ``report`` is the stored one
    (None when verification was skipped).
    """
    import dataclasses

    stored = manifest.get("verification") or {}
    fields = {field.name for field in dataclasses.fields(VerificationReport)}
    try:
        report = VerificationReport(**{key: value for key, value in stored.items() if key in fields}) if stored else None
    except TypeError:  # a manifest from another crossenc version: the message still carries the failures
        report = None
    failures = "; ".join(verification_failures(manifest))
    status = "failed verification when it was exported" if stored else "was exported without verification"
    return VerificationFailed(
        f"{what} {folder} {status} ({failures}), so its scores may differ from the model it came from; "
        f"{remedy}, or pass {ALLOW_UNVERIFIED} to use it anyway",
        report,
        folder,
    )


def check_manifest(
    folder: Path, files: list[str] | None = None, allow_unverified: bool = False, remedy: str = "re-export it"
) -> dict[str, Any] | None:
    """Verify hashes of ``files`` (default: every file listed) against the manifest, if one exists.

    Raises ArtifactIntegrityError naming the first missing or modified file. An artifact whose
    manifest says it failed (or skipped) verification raises VerificationFailed naming the missed
    metrics and ``remedy`` (what to do instead), unless ``allow_unverified`` (the backends'
    ``allow_unverified`` option): then it only warns (UnverifiedArtifactWarning). Returns the
    manifest (None when the folder has none).
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
    if not manifest.get("verified", False):
        if not allow_unverified:
            raise unverified_error(folder, manifest, "the artifact", remedy)
        warnings.warn(
            f"{folder} was exported without passing verification ({'; '.join(verification_failures(manifest))}); "
            "using it because allow_unverified=True",
            UnverifiedArtifactWarning,
            stacklevel=3,
        )
    return manifest
