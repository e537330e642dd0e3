"""backend="auto": read the profile ``crossenc autotune`` stored for this model, machine and device kind.

The bench measures and writes profiles (crossenc.bench.autotune); the facade only reads them here.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from crossenc.hardware import fingerprint_hash
from crossenc.manifest import source_weights_hash
from crossenc.model_source import ModelSource
from crossenc.paths import cache_dir
from crossenc.quality import Agreement, tier

logger = logging.getLogger(__name__)

SAFE_DEFAULT = ("torch", "sdpa")  # without a profile: exact, and fast on every device


def profile_path(source: ModelSource, device: str) -> Path:
    """``<cache>/autotune/<weights hash>-<machine hash>-<device kind>.json``."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return cache_dir() / "autotune" / f"{source_weights_hash(source.path)[:16]}-{fingerprint_hash(device)}-{kind}.json"


def pick(rows: list[dict[str, Any]], accuracy: str | None) -> dict[str, Any] | None:
    """Fastest crossenc row whose quality fits the accuracy tier (crossenc.quality.TIERS)."""
    budget = tier(accuracy)
    eligible = [
        row for row in rows
        if row["status"] == "ok" and row["engine"] == "crossenc"
        and budget.accepts(Agreement.from_bench_quality(row["quality"]))
    ]
    return max(eligible, key=lambda row: row["throughput"]["pairs_per_s"], default=None)


def choose_backend(source: ModelSource, device: str, accuracy: str | None = None) -> tuple[str, str]:
    """(backend, variant) from this machine's profile, or the safe default with a hint to tune."""
    tier(accuracy)  # validate early
    path = profile_path(source, device)
    if path.exists():
        chosen = pick(json.loads(path.read_text())["rows"], accuracy)
        if chosen:
            logger.info("backend='auto' -> %s %s (profile %s)", chosen["backend"], chosen["variant"], path)
            return chosen["backend"], chosen["variant"]
    logger.warning(
        "backend='auto': no autotune profile for %s on this machine; using %s %s. Run `crossenc autotune %s` "
        "to measure and pick the fastest backend.", source.name, *SAFE_DEFAULT, source.name,
    )
    return SAFE_DEFAULT
