"""One vocabulary for accuracy: the metrics, what they measured (Agreement), the limits (Tolerance).

Export verification limits each precision with a Tolerance (:data:`TOLERANCES`); ``backend="auto"``
picks within a named Tolerance (:data:`TIERS`); both judge an :class:`Agreement` measured the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        stop = start + 1
        while stop < len(values) and sorted_values[stop] == sorted_values[start]:
            stop += 1
        ranks[order[start:stop]] = (start + stop + 1) / 2.0
        start = stop
    return ranks


def spearman(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Spearman rank correlation; 1.0 when both are constant and equal-length."""
    if len(reference) < 2:
        return 1.0
    ref_ranks, cand_ranks = average_ranks(np.asarray(reference)), average_ranks(np.asarray(candidate))
    if np.std(ref_ranks) == 0 or np.std(cand_ranks) == 0:
        return 1.0 if np.array_equal(ref_ranks, cand_ranks) else 0.0
    return float(np.corrcoef(ref_ranks, cand_ranks)[0, 1])


def top_k_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Share of the reference's top-k documents that are also in the candidate's top-k."""
    k = min(k, len(reference))
    if k == 0:
        return 1.0
    top_reference = set(np.argsort(-np.asarray(reference), kind="stable")[:k].tolist())
    top_candidate = set(np.argsort(-np.asarray(candidate), kind="stable")[:k].tolist())
    return len(top_reference & top_candidate) / k


def reciprocal_rank(scores: np.ndarray, relevant: Sequence[int] | frozenset[int], cutoff: int = 10) -> float:
    """1/rank of the first relevant document within the top ``cutoff``, else 0."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:cutoff]
    for position, document in enumerate(order.tolist(), start=1):
        if document in relevant:
            return 1.0 / position
    return 0.0


def per_query(metric, reference: np.ndarray, candidate: np.ndarray, groups: Sequence[slice], **kwargs) -> float:
    """Mean of ``metric(reference[g], candidate[g])`` over query groups."""
    values = [metric(reference[group], candidate[group], **kwargs) for group in groups]
    return float(np.mean(values)) if values else 1.0


def mrr_at_k(scores: np.ndarray, groups: Sequence[slice], relevant: Sequence[frozenset[int]], k: int = 10) -> float:
    """Mean reciprocal rank over every query; one whose relevant documents the candidates lack counts 0."""
    values = [reciprocal_rank(scores[group], rel, k) for group, rel in zip(groups, relevant)]
    return float(np.mean(values)) if values else 0.0


def query_ndcg(scores: np.ndarray, relevant: Sequence[int] | frozenset[int], cutoff: int = 10) -> float:
    """nDCG@cutoff with binary relevance; 0 when no candidate is relevant (a first-stage miss)."""
    if not relevant:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")[:cutoff].tolist()
    dcg = sum(1.0 / np.log2(position + 1) for position, document in enumerate(order, start=1) if document in relevant)
    ideal = sum(1.0 / np.log2(position + 1) for position in range(1, min(len(relevant), cutoff) + 1))
    return float(dcg / ideal)


def ndcg_at_k(scores: np.ndarray, groups: Sequence[slice], relevant: Sequence[frozenset[int]], k: int = 10) -> float:
    """Mean nDCG@k over every query (binary relevance; a query whose candidates lack its relevant ones counts 0)."""
    values = [query_ndcg(scores[group], rel, k) for group, rel in zip(groups, relevant)]
    return float(np.mean(values)) if values else 0.0


@dataclass(frozen=True)
class Agreement:
    """How closely candidate logits follow the reference: raw error over all labels, ranking per query on the first."""

    max_abs_error: float
    mean_abs_error: float
    spearman: float  # mean per query
    top_k_agreement: float  # mean per query
    k: int = 10

    @classmethod
    def measure(
        cls, reference: np.ndarray, candidate: np.ndarray, groups: Sequence[slice], k: int = 10
    ) -> "Agreement":
        reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        candidate = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
        if reference.shape != candidate.shape:
            raise ValueError(f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}")
        difference = np.abs(reference - candidate)
        ref_first, cand_first = reference[:, 0], candidate[:, 0]
        return cls(
            max_abs_error=float(difference.max()) if difference.size else 0.0,
            mean_abs_error=float(difference.mean()) if difference.size else 0.0,
            spearman=per_query(spearman, ref_first, cand_first, groups),
            top_k_agreement=per_query(top_k_agreement, ref_first, cand_first, groups, k=k),
            k=k,
        )

    @classmethod
    def from_bench_quality(cls, quality: Mapping[str, Any]) -> "Agreement":
        """The quality record of a bench row (top-10 under its results-file name ``top10_agreement``)."""
        return cls(quality["max_abs_error"], quality.get("mean_abs_error", 0.0), quality["spearman"],
                   quality["top10_agreement"], k=10)


@dataclass(frozen=True)
class Tolerance:
    """Limits an Agreement must meet; None means "not checked". NaN never meets a limit."""

    max_abs: float | None = None  # max |logit - reference logit|
    spearman: float | None = None  # mean per-query Spearman
    top_k_agreement: float | None = None  # mean per-query top-k overlap
    k: int = 10

    def failures(self, agreement: Agreement) -> list[str]:
        """What ``agreement`` misses, one line per limit ("spearman 0.9 < 0.99"); empty when it passes."""
        missed = []
        if self.max_abs is not None and not agreement.max_abs_error <= self.max_abs:
            missed.append(f"max abs error {agreement.max_abs_error:.3g} > {self.max_abs:g}")
        if self.spearman is not None and not agreement.spearman >= self.spearman:
            missed.append(f"spearman {agreement.spearman:.4f} < {self.spearman:g}")
        if self.top_k_agreement is not None and not agreement.top_k_agreement >= self.top_k_agreement:
            missed.append(f"top-{self.k} agreement {agreement.top_k_agreement:.3f} < {self.top_k_agreement:g}")
        return missed

    def accepts(self, agreement: Agreement) -> bool:
        return not self.failures(agreement)


# Export verification, per precision. int8 is judged by ranking, not raw error (its logits move, its order should not).
# fp32 also by ranking: for a model whose logits are of order 1e-4, max abs alone would pass any graph.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4, spearman=0.999),
    "fp16": Tolerance(max_abs=2e-2),
    "bf16": Tolerance(max_abs=1e-1, spearman=0.999),
    "int8": Tolerance(spearman=0.99, top_k_agreement=0.95),
}
# backend="auto"'s accuracy tiers (``accuracy=``), against torch fp32 on the autotune workload. exact
# also asks near's ranking: a model with logits of order 1e-3 (random DeBERTa) met 1e-3 with top-10 0.84.
TIERS: dict[str, Tolerance] = {
    "exact": Tolerance(max_abs=1e-3, spearman=0.999, top_k_agreement=0.99),
    "near": Tolerance(spearman=0.999, top_k_agreement=0.99),
    "int8": Tolerance(spearman=0.99, top_k_agreement=0.95),
}
DEFAULT_ACCURACY = "near"


def tier(name: str | None) -> Tolerance:
    """The accuracy tier ``name`` (None: :data:`DEFAULT_ACCURACY`); ValueError naming the tiers otherwise."""
    name = name or DEFAULT_ACCURACY
    if name not in TIERS:
        raise ValueError(f"unknown accuracy tier {name!r}; choose one of {list(TIERS)}")
    return TIERS[name]


@dataclass
class VerificationReport:
    """Numbers of one comparison, the tolerance applied and whether it passed (kept in export manifests)."""

    variant: str
    num_pairs: int
    num_queries: int
    max_abs_error: float
    mean_abs_error: float
    spearman: float  # mean per query
    top_k_agreement: float  # mean per query
    k: int
    tolerance: dict[str, Any]
    passed: bool
    failures: list[str] = field(default_factory=list)
    batch_drift: float | None = None  # max |score alone - score in a batch| for batch-dependent variants
    source: str = ""

    @classmethod
    def judge(
        cls, agreement: Agreement, tolerance: Tolerance, variant: str, num_pairs: int, num_queries: int,
        source: str = "",
    ) -> "VerificationReport":
        failures = tolerance.failures(agreement)
        return cls(variant=variant, num_pairs=num_pairs, num_queries=num_queries, **asdict(agreement),
                   tolerance=asdict(tolerance), passed=not failures, failures=failures, source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        status = "PASSED" if self.passed else "FAILED: " + "; ".join(self.failures)
        return (
            f"{self.variant}: max|d|={self.max_abs_error:.2e} mean|d|={self.mean_abs_error:.2e} "
            f"spearman={self.spearman:.4f} top{self.k}={self.top_k_agreement:.3f} -> {status}"
        )
