"""Measure the candidates on this machine and store the profile backend="auto" reads (crossenc.profiles)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crossenc.paths import atomic_write
from crossenc.model_source import ModelSource
from crossenc.profiles import pick, profile_path


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


def autotune(
    model: str, device: str = "cpu", accuracy: str | None = None, workload_spec: str = "debian:300:3",
    variants: list[str] | None = None, repetitions: int = 2,
) -> tuple[dict[str, Any] | None, Path, dict[str, Any]]:
    """Measure candidates on this machine, store the profile, return (chosen row, profile path, result)."""
    from crossenc.bench.harness import BenchConfig, run_bench
    from crossenc.model_source import resolve_model
    from crossenc.workloads import load_workload

    config = BenchConfig(
        model=model, device=device, workload=workload_spec, repetitions=repetitions, latency_requests=2,
        variants=variants, include_reference=False,
    )
    result = run_bench(config, load_workload(workload_spec))
    source = ModelSource(path=resolve_model(model), name=model)
    path = save_profile(source, device, result)
    return pick(result["rows"], accuracy), path, result
