"""Measure one loaded scorer: throughput, rank latency, padding, memory, quality vs a reference."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from crossenc.quality import Agreement, mrr_at_k, ndcg_at_k
from crossenc.workloads import Workload

ScoreFn = Callable[[list[tuple[str, str]]], np.ndarray]  # pairs -> raw logits [N] (first label)


@dataclass
class Throughput:
    pairs_per_s: float  # median over repetitions
    pairs_per_s_min: float
    pairs_per_s_max: float
    real_tokens_per_s: float
    repetitions: int
    seconds: list[float]


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    docs_per_request: int


@dataclass
class Quality:
    """A row's crossenc.quality.Agreement (k=10) plus MRR@10 and nDCG@10, under the names results files keep."""

    max_abs_error: float
    mean_abs_error: float
    spearman: float
    top10_agreement: float
    mrr_at_10: float | None
    ndcg_at_10: float | None = None


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS counter for this process (Linux; silently ignored elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_throughput(
    score: ScoreFn, pairs: list[tuple[str, str]], real_tokens: int, repetitions: int
) -> tuple[Throughput, np.ndarray]:
    """Warm up on a slice, then time ``repetitions`` full passes; also return the last pass's logits."""
    score(pairs[: min(64, len(pairs))])
    seconds = []
    logits = np.zeros(0)
    for _ in range(repetitions):
        started = time.perf_counter()
        logits = score(pairs)
        seconds.append(time.perf_counter() - started)
    rates = [len(pairs) / elapsed for elapsed in seconds]
    median_seconds = statistics.median(seconds)
    throughput = Throughput(
        pairs_per_s=statistics.median(rates),
        pairs_per_s_min=min(rates),
        pairs_per_s_max=max(rates),
        real_tokens_per_s=real_tokens / median_seconds,
        repetitions=repetitions,
        seconds=seconds,
    )
    return throughput, logits


def measure_rank_latency(rank: Callable[[str, list[str]], object], workload: Workload, requests: int) -> Latency:
    """Time ``rank(query, documents)`` for the first ``requests`` queries (cycled), after one warm-up."""
    queries = workload.queries
    rank(queries[0].query, list(queries[0].documents))
    timings = []
    for index in range(requests):
        query = queries[index % len(queries)]
        started = time.perf_counter()
        rank(query.query, list(query.documents))
        timings.append((time.perf_counter() - started) * 1000)
    p50, p95, p99 = np.percentile(timings, [50, 95, 99]).tolist()
    return Latency(p50, p95, p99, requests, len(queries[0].documents))


def query_groups(workload: Workload) -> list[slice]:
    groups, start = [], 0
    for query in workload.queries:
        groups.append(slice(start, start + len(query.documents)))
        start += len(query.documents)
    return groups


def measure_quality(reference: np.ndarray | None, logits: np.ndarray, workload: Workload) -> Quality:
    """Agreement with the reference logits per query, and MRR@10 / nDCG@10 where relevance labels exist
    (over every query: one whose candidates lack its relevant document counts 0, as in MS MARCO)."""
    mrr, ndcg = relevance_metrics(logits, workload)
    if reference is None:
        return Quality(0.0, 0.0, 1.0, 1.0, mrr, ndcg)
    agreement = Agreement.measure(reference, logits, query_groups(workload), k=10)
    return Quality(agreement.max_abs_error, agreement.mean_abs_error, agreement.spearman, agreement.top_k_agreement,
                   mrr, ndcg)


def relevance_metrics(scores: np.ndarray, workload: Workload) -> tuple[float | None, float | None]:
    """(MRR@10, nDCG@10) of ``scores``; (None, None) for a workload without relevance labels. A query
    without a relevant candidate counts 0 only where a retriever chose the candidates (it missed); in
    a user's file it means "not labelled", so any such query leaves the metrics out, as before."""
    relevant = [query.relevant for query in workload.queries]
    if not any(relevant) or (workload.first_stage_name is None and not all(relevant)):
        return None, None
    groups = query_groups(workload)
    return mrr_at_k(scores, groups, relevant), ndcg_at_k(scores, groups, relevant)


def first_stage_quality(workload: Workload) -> dict[str, float] | None:
    """MRR@10 / nDCG@10 of the retriever's own order, for a workload whose candidates came from one."""
    if not workload.queries or any(query.first_stage is None for query in workload.queries):
        return None
    scores = np.concatenate([np.asarray(query.first_stage, dtype=np.float64) for query in workload.queries])
    mrr, ndcg = relevance_metrics(scores, workload)
    if mrr is None:
        return None
    recall = float(np.mean([bool(query.relevant) for query in workload.queries]))
    return {"name": workload.first_stage_name or "first stage", "mrr_at_10": mrr, "ndcg_at_10": ndcg,
            "recall": recall}


def random_order_mrr(groups: Sequence[slice], cutoff: int = 10) -> float:
    """Expected MRR@cutoff of a random ranking with one relevant document per query."""
    values = [sum(1 / rank for rank in range(1, min(cutoff, g.stop - g.start) + 1)) / (g.stop - g.start) for g in groups]
    return float(np.mean(values)) if values else 0.0
