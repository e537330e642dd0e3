"""Score datasets of (query, document) pairs or (query, documents) lists: in-process, or on Ray Data
actors that each hold one CrossEncoder. ``score_dataset`` needs ``pip install 'crossenc[ray]'``."""

from __future__ import annotations

from crossenc.distributed.files import read_table, score_file
from crossenc.distributed.ray_data import connect, score_dataset
from crossenc.distributed.scorer import BadRowError, Scorer, ScoringSpec

__all__ = ["BadRowError", "Scorer", "ScoringSpec", "connect", "read_table", "score_dataset", "score_file"]
