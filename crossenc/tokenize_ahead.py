"""Tokenize the next chunk of pairs on a worker thread while the current chunk is being scored.

On a GPU the host's tokenizer is the bottleneck: MiniLM-L6 runs far more pairs per second on
an H100 than one process tokenizes (Debian pairs: ~7,800 pairs/s per core here). Scoring in
chunks, with chunk ``k + 1`` tokenized while chunk ``k`` runs, makes throughput the slower of the
two instead of their sum. The Rust tokenizer releases the GIL, so the worker truly overlaps.
Each chunk is length-sorted on its own: packed backends lose nothing, padded ones a little.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Encoded = TypeVar("Encoded")
Pair = tuple[str, str]

DEFAULT_CHUNK_PAIRS = 2048  # a few GPU batches: small start-up delay, sorting still removes most padding


def should_tokenize_ahead(setting: bool | None, device: str, num_pairs: int, chunk_pairs: int) -> bool:
    """``setting`` when given; by default only on accelerators, and only when there is a second chunk."""
    if num_pairs <= chunk_pairs:
        return False
    if setting is not None:
        return setting
    return not device.startswith("cpu")


def tokenize_ahead(
    tokenize: Callable[[Sequence[Pair]], Encoded], pairs: Sequence[Pair], chunk_pairs: int = DEFAULT_CHUNK_PAIRS
) -> Iterator[tuple[int, Encoded]]:
    """Yield ``(offset, tokenize(pairs[offset:offset + chunk_pairs]))`` in order, one chunk prepared ahead."""
    if chunk_pairs <= 0:
        raise ValueError(f"chunk_pairs must be a positive integer, got {chunk_pairs}")
    if not pairs:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossenc-tokenize") as worker:
        ahead = worker.submit(tokenize, pairs[:chunk_pairs])
        for offset in range(0, len(pairs), chunk_pairs):
            encoded = ahead.result()
            following = offset + chunk_pairs
            if following < len(pairs):
                ahead = worker.submit(tokenize, pairs[following : following + chunk_pairs])
            yield offset, encoded
