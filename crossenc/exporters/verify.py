"""Parity of an artifact against the torch fp32 reference on real pairs, as a report, not a bool."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crossenc.quality import Agreement, Tolerance, VerificationReport
from crossenc.workloads import verification_groups

logger = logging.getLogger(__name__)

DEFAULT_VERIFY_QUERIES = 8
DEFAULT_VERIFY_DOCS = 32  # 8 x 32 = 256 pairs


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
    grouped = verification_groups(num_queries, docs_per_query, seed)
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


def compare_logits(
    reference: np.ndarray, candidate: np.ndarray, groups: Sequence[slice], tolerance: Tolerance, variant: str,
    source: str = "",
) -> VerificationReport:
    """Compare candidate vs reference logits (ranking on the first label) and apply the tolerance."""
    agreement = Agreement.measure(reference, candidate, groups, k=tolerance.k)
    return VerificationReport.judge(agreement, tolerance, variant, len(reference), len(groups), source)


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
