"""Tokenize the next chunk of pairs on a worker thread while the current chunk is being scored.

On a GPU the host's tokenizer is the bottleneck: MiniLM-L6 runs far more pairs per second on
an H100 than one process tokenizes (Debian pairs: ~7,800 pairs/s per core here). Scoring in
chunks, with chunk ``k + 1`` tokenized while chunk ``k`` runs, makes throughput the slower of the
two instead of their sum. The Rust tokenizer releases the GIL inside ``encode_batch``, so most of
the worker's time overlaps (building the id arrays afterwards holds it). Each chunk is length-
sorted on its own: packed backends lose nothing, padded ones a little, and padded fp16 scores can
differ in the last bits from a one-chunk run because batch neighbours change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


class TokenizeAhead:
    """Iterate ``(offset, tokenize(pairs[offset:offset + chunk_pairs]))`` in order, one chunk prepared ahead.

    Chunk 0 is submitted when the object is made (so a caller can start it before taking a
    lock), chunk ``k + 1`` when chunk ``k`` is handed out. ``close()`` (also on exhaustion, on
    an exception in the consumer, or leaving a ``with`` block) cancels what has not started and
    never waits for a running chunk: its result is dropped.
    """

    def __init__(
        self, tokenize: Callable[[Sequence[Pair]], Encoded], pairs: Sequence[Pair], chunk_pairs: int = DEFAULT_CHUNK_PAIRS
    ) -> None:
        if isinstance(chunk_pairs, bool) or not isinstance(chunk_pairs, int) or chunk_pairs <= 0:
            raise ValueError(f"chunk_pairs must be a positive integer, got {chunk_pairs!r}")
        self._tokenize, self._pairs, self._chunk = tokenize, pairs, chunk_pairs
        self._offsets = list(range(0, len(pairs), chunk_pairs))
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossenc-tokenize")
        self._ahead: Future | None = self._submit(0) if self._offsets else None

    def _submit(self, offset: int) -> Future:
        return self._worker.submit(self._tokenize, self._pairs[offset : offset + self._chunk])

    def __iter__(self) -> Iterator[tuple[int, Encoded]]:
        try:
            for position, offset in enumerate(self._offsets):
                if self._ahead is None:
                    raise RuntimeError("TokenizeAhead is closed (or already iterated)")
                encoded = self._ahead.result()
                following = position + 1
                self._ahead = self._submit(self._offsets[following]) if following < len(self._offsets) else None
                yield offset, encoded
        finally:
            self.close()

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.cancel()
            self._ahead = None
        self._worker.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "TokenizeAhead":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
