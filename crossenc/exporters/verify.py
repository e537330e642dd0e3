"""Parity of an artifact against the torch fp32 reference on real pairs, as a report, not a bool."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from crossenc.quality import per_query, spearman, top_k_agreement

logger = logging.getLogger(__name__)

DEFAULT_VERIFY_QUERIES = 8
DEFAULT_VERIFY_DOCS = 32  # 8 x 32 = 256 pairs


@dataclass(frozen=True)
class Tolerance:
    """Limits an artifact must meet; None means "not checked"."""

    max_abs: float | None = None  # max |logit - reference logit|
    spearman: float | None = None  # mean per-query Spearman
    top_k_agreement: float | None = None  # mean per-query top-k overlap
    k: int = 10


# Per precision. int8 is judged by ranking, not raw error (its logits move, its order should not).
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4),
    "fp16": Tolerance(max_abs=2e-2),
    "bf16": Tolerance(max_abs=1e-1, spearman=0.999),
    "int8": Tolerance(spearman=0.99, top_k_agreement=0.95),
}


@dataclass(frozen=True)
class VerificationSet:
    """Pairs grouped by query (contiguous ``groups`` slices) so ranking metrics are per query."""

    pairs: list[tuple[str, str]]
    groups: list[slice]
    source: str

    @classmethod
    def from_groups(cls, grouped: Sequence[Sequence[tuple[str, str]]], source: str) -> "VerificationSet":
        pairs, groups = [], []
        for group in grouped:
            groups.append(slice(len(pairs), len(pairs) + len(group)))
            pairs.extend(group)
        return cls(pairs, groups, source)


def default_verification_set(
    num_queries: int = DEFAULT_VERIFY_QUERIES, docs_per_query: int = DEFAULT_VERIFY_DOCS, seed: int = 0
) -> VerificationSet:
    """256 real pairs of varied length from the bundled Debian workload (held-out queries)."""
    from crossenc.bench.workload import EVAL_START, load_debian

    rng = np.random.default_rng(seed)
    grouped = []
    for query in load_debian().queries[EVAL_START + 50 : EVAL_START + 50 + num_queries]:
        others = [index for index in range(len(query.documents)) if index not in query.relevant]
        picked = rng.choice(len(others), size=docs_per_query - len(query.relevant), replace=False)
        chosen = sorted({others[index] for index in picked.tolist()} | set(query.relevant))
        grouped.append([(query.query, query.documents[index]) for index in chosen])
    return VerificationSet.from_groups(grouped, f"debian held-out {num_queries}x{docs_per_query}")


def load_verification_file(path: str) -> VerificationSet:
    """JSONL of {"query": str, "documents": [str, ...]} (the same format as bench workloads)."""
    grouped = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                grouped.append([(record["query"], document) for document in record["documents"]])
    if not grouped:
        raise ValueError(f"{path}: no verification queries found")
    return VerificationSet.from_groups(grouped, path)


@dataclass
class VerificationReport:
    """Numbers of one comparison, the tolerance applied and whether it passed."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        status = "PASSED" if self.passed else "FAILED: " + "; ".join(self.failures)
        return (
            f"{self.variant}: max|d|={self.max_abs_error:.2e} mean|d|={self.mean_abs_error:.2e} "
            f"spearman={self.spearman:.4f} top{self.k}={self.top_k_agreement:.3f} -> {status}"
        )


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, groups: Sequence[slice], tolerance: Tolerance, variant: str,
    source: str = "",
) -> VerificationReport:
    """Compare first-label logits of candidate vs reference and apply the tolerance."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}")
    difference = np.abs(reference - candidate)
    ref_first, cand_first = reference[:, 0], candidate[:, 0]
    report = VerificationReport(
        variant=variant,
        num_pairs=len(reference),
        num_queries=len(groups),
        max_abs_error=float(difference.max()) if difference.size else 0.0,
        mean_abs_error=float(difference.mean()) if difference.size else 0.0,
        spearman=per_query(spearman, ref_first, cand_first, groups),
        top_k_agreement=per_query(top_k_agreement, ref_first, cand_first, groups, k=tolerance.k),
        k=tolerance.k,
        tolerance=asdict(tolerance),
        passed=True,
        source=source,
    )
    if tolerance.max_abs is not None and report.max_abs_error > tolerance.max_abs:
        report.failures.append(f"max abs error {report.max_abs_error:.3g} > {tolerance.max_abs:g}")
    if tolerance.spearman is not None and report.spearman < tolerance.spearman:
        report.failures.append(f"spearman {report.spearman:.4f} < {tolerance.spearman:g}")
    if tolerance.top_k_agreement is not None and report.top_k_agreement < tolerance.top_k_agreement:
        report.failures.append(f"top-{tolerance.k} agreement {report.top_k_agreement:.3f} < {tolerance.top_k_agreement:g}")
    report.passed = not report.failures
    return report


def batch_drift(encoder, pairs: Sequence[tuple[str, str]], sample: int = 16) -> float:
    """Max change of a pair's logit between scoring it alone and inside a batch of neighbours."""
    import torch

    identity = torch.nn.Identity()
    in_batch = encoder.predict(list(pairs), activation_fn=identity, batch_size=32)
    alone = [encoder.predict(pairs[index], activation_fn=identity) for index in range(min(sample, len(pairs)))]
    return float(np.max(np.abs(np.asarray(alone).reshape(len(alone), -1) - in_batch[: len(alone)].reshape(len(alone), -1))))


def verify_encoder(
    reference, candidate, verification_set: VerificationSet, tolerance: Tolerance, variant: str,
    measure_drift: bool = False,
) -> VerificationReport:
    """Score the set with both CrossEncoders (raw logits) and compare."""
    import torch

    identity = torch.nn.Identity()
    reference_logits = reference.predict(verification_set.pairs, activation_fn=identity, batch_size=32)
    candidate_logits = candidate.predict(verification_set.pairs, activation_fn=identity, batch_size=32)
    report = compare_logits(
        reference_logits, candidate_logits, verification_set.groups, tolerance, variant, verification_set.source
    )
    if measure_drift:
        report.batch_drift = batch_drift(candidate, verification_set.pairs)
    logger.info(report.summary())
    return report
