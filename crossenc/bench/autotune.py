"""Pick the fastest backend/variant within an accuracy budget, cached per model and machine."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossenc.bench.results import atomic_write
from crossenc.exporters.manifest import source_weights_hash
from crossenc.hardware import fingerprint_hash
from crossenc.model_source import ModelSource
from crossenc.paths import cache_dir

logger = logging.getLogger(__name__)

DEFAULT_ACCURACY = "near"
SAFE_DEFAULT = ("torch", "sdpa")


@dataclass(frozen=True)
class AccuracyTier:
    """Limits against torch fp32 on the tuning workload; None = not checked."""

    name: str
    max_abs_error: float | None = None
    min_spearman: float | None = None
    min_top10: float | None = None

    def accepts(self, quality: dict[str, float]) -> bool:
        if self.max_abs_error is not None and quality["max_abs_error"] > self.max_abs_error:
            return False
        if self.min_spearman is not None and quality["spearman"] < self.min_spearman:
            return False
        return self.min_top10 is None or quality["top10_agreement"] >= self.min_top10


TIERS: dict[str, AccuracyTier] = {
    "exact": AccuracyTier("exact", max_abs_error=1e-3),
    "near": AccuracyTier("near", min_spearman=0.999, min_top10=0.99),
    "int8": AccuracyTier("int8", min_spearman=0.99, min_top10=0.95),
}


def tier(name: str | None) -> AccuracyTier:
    name = name or DEFAULT_ACCURACY
    if name not in TIERS:
        raise ValueError(f"unknown accuracy tier {name!r}; choose one of {list(TIERS)}")
    return TIERS[name]


def profile_path(source: ModelSource, device: str) -> Path:
    """``<cache>/autotune/<weights hash>-<machine hash>-<device kind>.json``."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return cache_dir() / "autotune" / f"{source_weights_hash(source.path)[:16]}-{fingerprint_hash(device)}-{kind}.json"


def pick(rows: list[dict[str, Any]], accuracy: str | None) -> dict[str, Any] | None:
    """Fastest crossenc row whose quality fits the tier."""
    budget = tier(accuracy)
    eligible = [
        row for row in rows
        if row["status"] == "ok" and row["engine"] == "crossenc" and budget.accepts(row["quality"])
    ]
    return max(eligible, key=lambda row: row["throughput"]["pairs_per_s"], default=None)


def save_profile(source: ModelSource, device: str, result: dict[str, Any]) -> Path:
    """Keep the measured rows so any tier can be answered later without re-measuring."""
    path = profile_path(source, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "model": source.name,
        "device": device,
        "machine": result["machine"],
        "created": result["created"],
        "rows": [
            {key: row[key] for key in ("label", "engine", "backend", "variant", "status", "throughput", "quality")}
            for row in result["rows"]
        ],
    }
    atomic_write(path, json.dumps(profile, indent=2).encode())
    return path


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


def autotune(
    model: str, device: str = "cpu", accuracy: str | None = None, workload_spec: str = "debian:300:3",
    variants: list[str] | None = None, repetitions: int = 2,
) -> tuple[dict[str, Any] | None, Path, dict[str, Any]]:
    """Measure candidates on this machine, store the profile, return (chosen row, profile path, result)."""
    from crossenc.bench.harness import BenchConfig, run_bench
    from crossenc.bench.workload import load_workload
    from crossenc.model_source import resolve_model

    config = BenchConfig(
        model=model, device=device, workload=workload_spec, repetitions=repetitions, latency_requests=2,
        variants=variants, include_reference=False,
    )
    result = run_bench(config, load_workload(workload_spec))
    source = ModelSource(path=resolve_model(model), name=model)
    path = save_profile(source, device, result)
    return pick(result["rows"], accuracy), path, result
