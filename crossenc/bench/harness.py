"""Run every backend x variant available on a device over a workload and collect result rows."""

from __future__ import annotations

import datetime as _dt
import gc
import logging
import sys
from pathlib import Path
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from crossenc.bench.measure import (
    first_stage_quality,
    measure_quality,
    measure_rank_latency,
    measure_throughput,
    peak_rss_mb,
    peak_rss_reset,
    query_groups,
    random_order_mrr,
)
from crossenc.backends import BACKENDS
from crossenc.hardware import cuda_available, fingerprint
from crossenc.model_source import resolve_model
from crossenc.tokenization import checkpoint_source, tokenizer_setup
from crossenc.workloads import Workload

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
REFERENCE_LABEL = "sentence-transformers torch fp32"
ANCHOR_LABEL = "torch eager"  # regression checks divide by this row: a slower machine scales every row alike


@dataclass(frozen=True)
class Candidate:
    """One row to measure: a crossenc backend/variant, or a sentence-transformers reference."""

    engine: str  # "crossenc" or "sentence-transformers"
    backend: str
    variant: str

    @property
    def label(self) -> str:
        if self.engine == "sentence-transformers":
            return f"sentence-transformers {self.backend} {self.variant}"
        return f"{self.backend} {self.variant}"


@dataclass
class BenchConfig:
    model: str
    device: str = "cpu"
    workload: str = "debian-bm25:300:100"
    batch_size: int = 32
    max_tokens: int | None = None
    repetitions: int = 3
    latency_requests: int = 5
    variants: list[str] | None = None  # "backend:variant" filters; None = all available
    include_reference: bool = True


@dataclass
class BenchRow:
    label: str
    engine: str
    backend: str
    variant: str
    device: str
    status: str = "ok"  # "ok" or "error"
    error: str | None = None
    precision: str | None = None
    threads: int | None = None
    load_seconds: float | None = None
    throughput: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    padding_efficiency: float | None = None
    peak_rss_mb: float | None = None
    gpu_peak_mb: float | None = None
    ratio_vs_reference: float | None = None
    ratio_vs_anchor: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def available_candidates(device: str) -> list[Candidate]:
    """Every variant crossenc.backends declares for the bench that this host can run on ``device``."""
    return [
        Candidate("crossenc", backend.name, variant.name)
        for backend in BACKENDS.values()
        for variant in backend.runnable(device)
        if variant.bench
    ]


def reference_candidates(device: str) -> list[Candidate]:
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is None:
        return []
    rows = [Candidate("sentence-transformers", "torch", "fp32")]
    if device.startswith("cuda"):
        rows.append(Candidate("sentence-transformers", "torch", "fp16"))
    return rows


def select(candidates: list[Candidate], filters: list[str] | None) -> list[Candidate]:
    """Keep candidates matching any ``backend`` or ``backend:variant`` filter; the anchor always stays."""
    if not filters:
        return candidates
    wanted = set(filters)
    return [
        c for c in candidates
        if c.backend in wanted or f"{c.backend}:{c.variant}" in wanted or c.label == ANCHOR_LABEL
    ]


def _load(candidate: Candidate, config: BenchConfig):
    """Return (score_logits, rank, info, padding_getter) for a candidate."""
    import torch

    if candidate.engine == "sentence-transformers":
        from sentence_transformers import CrossEncoder as STCrossEncoder

        identity = torch.nn.Identity()  # its raw logits: sentence-transformers has no predict_logits

        kwargs = {"model_kwargs": {"dtype": torch.float16}} if candidate.variant == "fp16" else {}
        model = STCrossEncoder(config.model, device=config.device, **kwargs)

        def st_score(pairs):
            return np.asarray(model.predict(pairs, batch_size=config.batch_size, activation_fn=identity)).reshape(len(pairs), -1)[:, 0]

        def st_rank(query, documents):
            return model.rank(query, documents, batch_size=config.batch_size)

        info = {"precision": candidate.variant, "threads": torch.get_num_threads(), "sentence_transformers": _version("sentence_transformers")}
        return st_score, st_rank, info, lambda: None
    from crossenc import CrossEncoder

    extra: dict[str, Any] = {"max_tokens": config.max_tokens} if config.max_tokens else {}
    if candidate.backend in ("onnx", "openvino"):
        # The bench reports quality itself: measure artifacts that missed their tolerance too.
        extra["backend_kwargs"] = {"allow_unverified": True}
    encoder = CrossEncoder(config.model, backend=candidate.backend, variant=candidate.variant, device=config.device, **extra)

    def score(pairs):
        return encoder.predict_logits(pairs, batch_size=config.batch_size)[:, 0]

    def rank(query, documents):
        return encoder.rank(query, documents, batch_size=config.batch_size)

    return score, rank, encoder.info(), lambda: encoder.last_padding.efficiency


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def measure_candidate(
    candidate: Candidate, config: BenchConfig, workload: Workload, reference_logits: np.ndarray | None, real_tokens: int
) -> tuple[BenchRow, np.ndarray | None]:
    """Load, measure and score one candidate; errors become a row with status "error"."""
    row = BenchRow(candidate.label, candidate.engine, candidate.backend, candidate.variant, config.device)
    pairs = workload.pairs()
    gc.collect()
    peak_rss_reset()
    gpu = cuda_available() and config.device.startswith("cuda")
    if gpu:
        import torch

        torch.cuda.reset_peak_memory_stats()
    try:
        started = time.perf_counter()
        score, rank, info, padding = _load(candidate, config)
        row.load_seconds = time.perf_counter() - started
        throughput, logits = measure_throughput(score, pairs, real_tokens, config.repetitions)
        row.padding_efficiency = padding()  # of the throughput passes, before rank() calls replace it
        row.throughput = asdict(throughput)
        row.quality = asdict(measure_quality(reference_logits, logits, workload))
        row.latency = asdict(measure_rank_latency(rank, workload, config.latency_requests))
        row.precision = info.get("precision")
        row.threads = info.get("details", {}).get("threads", info.get("threads"))
        row.info = info
    except Exception as error:  # a broken variant must not sink the whole run
        row.status, row.error = "error", f"{type(error).__name__}: {error}"
        logger.debug("candidate %s failed:\n%s", candidate.label, traceback.format_exc())
        return row, None
    finally:
        row.peak_rss_mb = peak_rss_mb()
        if gpu:
            import torch

            row.gpu_peak_mb = torch.cuda.max_memory_allocated() / 2**20
    return row, logits


def add_ratios(rows: list[BenchRow]) -> None:
    """Fill pairs/s ratios to the sentence-transformers reference and to the torch eager anchor."""
    def rate(label: str) -> float | None:
        for row in rows:
            if row.label == label and row.throughput:
                return row.throughput["pairs_per_s"]
        return None

    reference, anchor = rate(REFERENCE_LABEL), rate(ANCHOR_LABEL)
    for row in rows:
        if row.throughput:
            value = row.throughput["pairs_per_s"]
            row.ratio_vs_reference = value / reference if reference else None
            row.ratio_vs_anchor = value / anchor if anchor else None


def planned_candidates(config: BenchConfig) -> list[Candidate]:
    """The rows :func:`run_bench` measures, in its order: the anchor first (it is also the quality
    reference), then sentence-transformers' rows when asked for, then every other candidate."""
    candidates = select(available_candidates(config.device), config.variants)
    candidates.sort(key=lambda c: c.label != ANCHOR_LABEL)
    if config.include_reference:
        candidates[1:1] = reference_candidates(config.device)
    return candidates


def run_bench(
    config: BenchConfig, workload: Workload, on_row: Callable[[BenchRow], None] | None = None
) -> dict[str, Any]:
    """Measure every candidate of :func:`planned_candidates` on ``workload``, in that order."""
    candidates = planned_candidates(config)
    source, _ = checkpoint_source(resolve_model(config.model))
    lengths = tokenizer_setup(source).encode(workload.pairs()).lengths  # the ids every crossenc row scores
    real_tokens = int(lengths.sum())
    rows: list[BenchRow] = []
    reference_logits = None
    for candidate in candidates:
        row, logits = measure_candidate(candidate, config, workload, reference_logits, real_tokens)
        if candidate.label == ANCHOR_LABEL and logits is not None:
            reference_logits = logits  # every later row's quality is measured against torch eager fp32
        rows.append(row)
        if on_row:
            on_row(row)
    add_ratios(rows)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["crossenc", *sys.argv[1:]]) if Path(sys.argv[0]).stem in ("crossenc", "cli")
        else " ".join(sys.argv),
        "config": asdict(config),
        "machine": fingerprint(config.device),
        "versions": {m: _version(m) for m in ("crossenc", "torch", "transformers", "onnxruntime", "openvino", "nncf", "sentence_transformers", "torchao")},
        "workload": {
            "name": workload.name,
            "queries": len(workload.queries),
            "pairs": workload.num_pairs,
            "tokens_mean": float(lengths.mean()),
            "tokens_p50": float(np.median(lengths)),
            "tokens_p95": float(np.percentile(lengths, 95)),
            "tokens_max": int(lengths.max()),
            "random_order_mrr_at_10": random_order_mrr(query_groups(workload)),
        },
        "first_stage": first_stage_quality(workload),  # the retriever's own ranking: the row to beat
        "reference": REFERENCE_LABEL,
        "anchor": ANCHOR_LABEL,
        "rows": [asdict(row) for row in rows],
    }
