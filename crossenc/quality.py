"""Ranking-quality metrics shared by verification and the bench: Spearman, top-k agreement, MRR."""

from __future__ import annotations

from collections.abc import Sequence

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
    values = [reciprocal_rank(scores[group], rel, k) for group, rel in zip(groups, relevant)]
    return float(np.mean(values)) if values else 0.0
