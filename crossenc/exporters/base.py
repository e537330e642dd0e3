"""What every exporter shares: the result type, the failure, the atomic output folder."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossenc.exporters.manifest import MANIFEST_NAME, WEIGHT_SUFFIXES
from crossenc.exporters.verify import VerificationReport
from crossenc.model_source import ModelSource, resolve_model

COPIED_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")  # tokenizer and config files


class VerificationFailed(RuntimeError):
    """An artifact missed its parity tolerance; ``report`` holds the numbers, ``path`` the artifact."""

    def __init__(self, message: str, report: VerificationReport, path: Path | None = None) -> None:
        super().__init__(message)
        self.report = report
        self.path = path


@dataclass(frozen=True)
class ExportResult:
    """Where an export landed, its manifest, and its verification report (None if skipped)."""

    path: Path
    manifest: dict[str, Any]
    report: VerificationReport | None

    @property
    def verified(self) -> bool:
        return bool(self.report and self.report.passed)


def as_source(model: str | os.PathLike | ModelSource) -> ModelSource:
    """A ModelSource for a folder, Hub id or 'demo'."""
    if isinstance(model, ModelSource):
        return model
    from crossenc.cli import resolve_model_argument

    name = resolve_model_argument(str(model))
    return ModelSource(path=resolve_model(name), name=str(model))


def copy_support_files(source: ModelSource, target: Path) -> list[str]:
    """Tokenizer and config files (no weights, no manifest) from the checkpoint root into ``target``."""
    copied = []
    suffixes = COPIED_SUFFIXES + ((".py",) if source.trust_remote_code else ())
    for path in sorted(source.path.iterdir()):
        wanted = path.suffix in suffixes and path.suffix not in WEIGHT_SUFFIXES and path.name != MANIFEST_NAME
        if path.is_file() and wanted:
            shutil.copy2(path, target / path.name)
            copied.append(path.name)
    return copied


def artifact_encoder(path: Path, source: ModelSource, **kwargs: Any):
    """A CrossEncoder over ``path`` loaded with the source's trust and tokenizer/config settings."""
    from crossenc import CrossEncoder

    return CrossEncoder(
        str(path), trust_remote_code=source.trust_remote_code, allow_pickle=source.allow_pickle,
        config_kwargs=dict(source.config_kwargs), tokenizer_kwargs=dict(source.tokenizer_kwargs), **kwargs,
    )
