"""crossenc's own exceptions and warnings, importable without any ML framework."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossenc.quality import VerificationReport


class VerificationFailed(RuntimeError):
    """An artifact missed its parity tolerance; ``report`` holds the numbers (None: verification was
    skipped), ``path`` the artifact."""

    def __init__(self, message: str, report: VerificationReport | None, path: Path | None = None) -> None:
        super().__init__(message)
        self.report = report
        self.path = path


class ArtifactIntegrityError(ValueError):
    """A file of an exported artifact is missing or differs from its manifest hash."""


class UnverifiedArtifactWarning(UserWarning):
    """The artifact's manifest says it failed (or skipped) verification, and it is loaded anyway
    (``allow_unverified=True``; without it loading raises VerificationFailed)."""
