"""What every exporter shares: the result type, the verified-only output folder, the support files."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossenc.demo import expand_alias
from crossenc.errors import VerificationFailed
from crossenc.manifest import MANIFEST_NAME, WEIGHT_SUFFIXES
from crossenc.model_source import ModelSource, resolve_model
from crossenc.paths import install_dir, staging_dir
from crossenc.quality import TOLERANCES, Tolerance, VerificationReport

logger = logging.getLogger(__name__)

COPIED_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")  # tokenizer and config files
FAILED_SUFFIX = ".failed"  # <output_dir>.failed: the last export into output_dir that failed verification


@dataclass(frozen=True)
class ExportResult:
    """Where an export landed, its manifest, and its verification report (None if skipped)."""

    path: Path
    manifest: dict[str, Any]
    report: VerificationReport | None

    @property
    def verified(self) -> bool:
        return bool(self.report and self.report.passed)


def failed_path(output_dir: str | os.PathLike) -> Path:
    """Where an export into ``output_dir`` that failed verification is kept: the sibling ``<output_dir>.failed``."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + FAILED_SUFFIX)


def move_folder(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` (an existing ``target`` is replaced once the move is complete).
    ``source`` is first claimed whole by one rename, so of two processes moving it at once one gets
    all of it and the other FileNotFoundError. One filesystem only."""
    with staging_dir(target) as staging:
        claimed = staging / source.name
        os.replace(source, claimed)
        install_dir(claimed, target)


def write_export(
    output_dir: str | os.PathLike,
    build: Callable[[Path], tuple[dict[str, Any], VerificationReport | None]],
    label: str,
    advice: str,
) -> ExportResult:
    """Build an artifact in a staging folder; replace ``output_dir`` with it only if it passed verification.

    ``build(staging)`` writes every file and the manifest into ``staging`` and returns (manifest,
    report); report None means verification was skipped (the manifest says so), and such an artifact
    is written like a verified one. A passing artifact replaces ``output_dir`` atomically and removes a
    stale ``<output_dir>.failed``. A failing one leaves ``output_dir`` exactly as it was (an earlier
    export stays usable; nothing is created where there was nothing), is kept for inspection at
    ``<output_dir>.failed`` (replacing an older one), and VerificationFailed names that folder.
    An error inside ``build`` leaves neither folder touched.
    """
    output_dir = Path(output_dir)
    failed = failed_path(output_dir)
    with staging_dir(output_dir) as staging:
        manifest, report = build(staging)
        if report is not None and not report.passed:
            install_dir(staging, failed)
            previous = "the previous export there is unchanged" if output_dir.exists() else "nothing was written there"
            raise VerificationFailed(
                f"{label} FAILED verification: {report.summary()}. {output_dir} was not replaced ({previous}); the "
                f"failed artifact is kept for inspection in {failed} (\"verified\": false in its {MANIFEST_NAME}). "
                f"{advice}",
                report,
                failed,
            )
        install_dir(staging, output_dir)
    if failed.exists():
        logger.info("removing %s: the export into %s now passed verification", failed, output_dir)
        shutil.rmtree(failed, ignore_errors=True)
    return ExportResult(output_dir, manifest, report)


def as_source(model: str | os.PathLike | ModelSource) -> ModelSource:
    """A ModelSource for a folder, Hub id or 'demo'."""
    if isinstance(model, ModelSource):
        return model
    return ModelSource(path=resolve_model(expand_alias(str(model))), name=str(model))


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


# --------------------------------------------------------------------------- the CLI of every format
def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``crossenc export FORMAT MODEL OUT`` arguments every format takes: data, verification, tolerance overrides."""
    parser.add_argument("model", help="model folder, Hub id, or 'demo'")
    parser.add_argument("output", help="folder to write (replaced atomically, and only by a verified export: one that "
                        "fails verification is kept in OUTPUT.failed)")
    parser.add_argument("--calibration", default=None, metavar="FILE",
                        help="JSONL of {query, documents} to calibrate int8 on (default: Debian training queries)")
    parser.add_argument("--verify-file", default=None, metavar="FILE", help="JSONL of {query, documents} to verify on")
    parser.add_argument("--no-verify", action="store_true", help="skip verification (manifest says verified: false)")
    parser.add_argument("--max-abs", type=float, default=None, help="tolerance override: max |logit difference|")
    parser.add_argument("--min-spearman", type=float, default=None, help="tolerance override: mean per-query Spearman")
    parser.add_argument("--min-top-k", type=float, default=None, help="tolerance override: mean top-10 agreement")


def tolerance_from_args(args: argparse.Namespace, precision: str) -> Tolerance | None:
    """The precision's tolerance with the command line's overrides, or None (the default) without any."""
    overrides = {"max_abs": args.max_abs, "spearman": args.min_spearman, "top_k_agreement": args.min_top_k}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(TOLERANCES[precision], **overrides) if overrides else None


def export_summary(result: ExportResult) -> str:
    """The line a successful ``crossenc export`` prints (a failed one raises VerificationFailed to the CLI)."""
    status = result.report.summary() if result.report else (
        "verification skipped (--no-verify): backends refuse it unless backend_kwargs={'allow_unverified': True}"
    )
    return f"wrote {result.path}: {status}"
