"""Tokenize the next chunks of pairs on a worker (thread or processes) while the current one is scored.

On a GPU the host's tokenizer was the bottleneck: MiniLM-L6 runs far more pairs per second on
an H100 than ``tokenizers`` encodes (Debian pairs: ~11,000 pairs/s per core here, `crossenc
bench-host`; the compiled engine of :mod:`crossenc.fast_tokenization`, ~300,000). Scoring in
chunks, with chunk ``k + 1`` tokenized while chunk ``k`` runs, makes throughput the slower of the
two instead of their sum. The Rust tokenizer releases the GIL inside ``encode_batch``, so most of
the worker's time overlaps (building the id arrays afterwards holds it; worker processes,
:mod:`crossenc.tokenizer_processes`, take that off this process too). Each chunk is length-
sorted on its own: packed backends lose nothing, padded ones a little, and padded fp16 scores can
differ in the last bits from a one-chunk run because batch neighbours change. The chunks ramp up
from ``first_chunk_pairs``, doubling to ``chunk_pairs``: scoring starts once a few batches are
tokenized instead of a whole chunk (on the H200 a 2048-pair first chunk was ~7% of a 10,000-pair
call); while tokenizing runs at least twice as fast as scoring, each chunk is ready before its
predecessor is scored.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TypeVar

Encoded = TypeVar("Encoded")
Pair = tuple[str, str]

DEFAULT_CHUNK_PAIRS = 2048  # a few GPU batches: small start-up delay, sorting still removes most padding
DEFAULT_FIRST_CHUNK_PAIRS = 256  # one GPU batch: the device waits for this much tokenizing, not a whole chunk


def chunk_offsets(num_pairs: int, chunk_pairs: int, first_chunk_pairs: int | None = None) -> list[int]:
    """Start of each chunk: sizes ``first_chunk_pairs`` (at most ``chunk_pairs``), doubling up to ``chunk_pairs``."""
    for name, value in (("chunk_pairs", chunk_pairs), ("first_chunk_pairs", first_chunk_pairs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    size = min(chunk_pairs, DEFAULT_FIRST_CHUNK_PAIRS if first_chunk_pairs is None else first_chunk_pairs)
    offsets, offset = [], 0
    while offset < num_pairs:
        offsets.append(offset)
        offset += size
        size = min(2 * size, chunk_pairs)
    return offsets


def should_tokenize_ahead(setting: bool | None, device: str, num_pairs: int, chunk_pairs: int) -> bool:
    """``setting`` when given; by default only on accelerators, and only when there is a second chunk."""
    if num_pairs <= chunk_pairs:
        return False
    if setting is not None:
        return setting
    return not device.startswith("cpu")


class TokenizeAhead:
    """Iterate ``(offset, tokenize(chunk))`` in order over chunks that ramp up from ``first_chunk_pairs`` to
    ``chunk_pairs`` (:func:`chunk_offsets`; ``None``: the default ramp), ``depth`` chunks prepared ahead.

    Chunks ``0 .. depth - 1`` are submitted when the object is made (so a caller can start them
    before taking a lock), chunk ``k + depth`` when chunk ``k`` is handed out. They run on a
    private one-thread pool, or on ``executor`` when given (e.g. tokenizer worker processes;
    ``tokenize`` must then be picklable, and the shared executor is left running). ``close()``
    (also on exhaustion, on an exception in the consumer, or leaving a ``with`` block) cancels
    what has not started and does not wait for chunks already running: their results are
    dropped (on a shared executor they still finish before its later work).
    """

    def __init__(
        self,
        tokenize: Callable[[Sequence[Pair]], Encoded],
        pairs: Sequence[Pair],
        chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
        *,
        executor: Executor | None = None,
        depth: int = 1,
        first_chunk_pairs: int | None = None,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        self._tokenize, self._pairs = tokenize, pairs
        self._offsets = chunk_offsets(len(pairs), chunk_pairs, first_chunk_pairs)
        self._ends = dict(zip(self._offsets, self._offsets[1:] + [len(pairs)]))
        self._own_worker = executor is None
        self._worker = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossenc-tokenize")
        self._ahead: collections.deque[Future] = collections.deque()
        self._next = min(depth, len(self._offsets))  # index of the next chunk to submit
        self._closed = False
        try:
            for offset in self._offsets[:depth]:
                self._ahead.append(self._submit(offset))
        except BaseException:
            self.close()  # a refused submit must not leave the chunks already queued running for nobody
            raise

    def _submit(self, offset: int) -> Future:
        return self._worker.submit(self._tokenize, self._pairs[offset : self._ends[offset]])

    def __iter__(self) -> Iterator[tuple[int, Encoded]]:
        try:
            for offset in self._offsets:
                if self._closed:
                    raise RuntimeError("TokenizeAhead is closed (or already iterated)")
                encoded = self._ahead.popleft().result()
                if self._next < len(self._offsets):
                    self._ahead.append(self._submit(self._offsets[self._next]))
                    self._next += 1
                yield offset, encoded
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        while self._ahead:
            self._ahead.popleft().cancel()
        if self._own_worker:
            self._worker.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "TokenizeAhead":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
