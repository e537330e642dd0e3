"""Cross-request batching: merge the pairs of concurrent requests into one pipeline call.

Two stages, each on its own thread (TEI's prefetching router, infinity's pre/core stages):
the tokenizer thread takes every request waiting (up to ``max_group_pairs``), tokenizes each
one and hands the group over a one-slot queue; the scoring thread concatenates the group's
token ids into one ``predict_tokenized`` call, so pairs of different requests are length-sorted
into the same token-budget batches, and gives each request its own logits in input order.
While a group is scored the next one is tokenized. Admission is bounded in pairs (``QueueFull``).
A merged call that fails is retried request by request, so one bad request fails alone.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from queue import Queue
from typing import Any

import numpy as np
import torch

from crossenc.pair_encoding import EncodedPairs, running_offsets

logger = logging.getLogger(__name__)

Pair = tuple[str, str]
Tokenize = Callable[[Sequence[Pair]], EncodedPairs]
Check = Callable[[Sequence[Pair], EncodedPairs], None]


class QueueFull(Exception):
    """Admitting a request would queue more pairs than allowed; retry after ``retry_after`` seconds."""

    def __init__(self, requested: int, queued: int, capacity: int, retry_after: int) -> None:
        super().__init__(
            f"the server is busy: {queued} pairs queued, {requested} more would exceed its {capacity}; "
            f"retry in {retry_after} s"
        )
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The scheduler no longer admits requests (it is closing or its threads stopped)."""


@dataclass(frozen=True)
class Scored:
    """One request's answer: fp32 logits ``[pairs, num_labels]`` in input order, and its real tokens."""

    logits: np.ndarray
    tokens: int


@dataclass(frozen=True)
class GroupStats:
    """One merged pipeline call, for metrics."""

    requests: int
    pairs: int
    real_tokens: int
    padded_tokens: int
    seconds: float
    merged_failed: bool = False


@dataclass
class _Job:
    pairs: Sequence[Pair]
    tokenize: Tokenize | None
    check: Check | None
    future: Future


def concatenate(parts: Sequence[EncodedPairs]) -> EncodedPairs:
    """One ``EncodedPairs`` holding ``parts`` one after the other (pair order kept)."""
    if len(parts) == 1:
        return parts[0]
    lengths = np.concatenate([part.lengths for part in parts])
    type_ids = None if parts[0].type_ids is None else np.concatenate([part.type_ids for part in parts])
    return EncodedPairs(np.concatenate([part.ids for part in parts]), type_ids, running_offsets(lengths))


class Scheduler:
    """Admit requests, merge them across clients, score them on two threads (see the module doc).

    ``encoder`` needs ``tokenize_pairs``, ``predict_tokenized`` and ``num_labels`` (a ``CrossEncoder``).
    ``observe`` gets a :class:`GroupStats` after each merged call.
    """

    def __init__(
        self,
        encoder: Any,
        *,
        max_queue_pairs: int,
        max_group_pairs: int,
        batch_size: int = 32,
        observe: Callable[[GroupStats], None] | None = None,
    ) -> None:
        self.encoder = encoder
        self.max_queue_pairs = max_queue_pairs
        self.max_group_pairs = max_group_pairs
        self.batch_size = batch_size
        self._observe = observe or (lambda stats: None)
        self._lock = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._queued_pairs = 0
        self._queued_requests = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._free_slots = threading.Semaphore(1)  # one group tokenized ahead of the one being scored
        self._handoff: Queue[list[tuple[_Job, EncodedPairs]] | None] = Queue()
        self._pairs_per_second: float | None = None

    # ------------------------------------------------------------------ admission
    @property
    def queued_pairs(self) -> int:
        """Pairs admitted and not yet answered (waiting, tokenized or being scored)."""
        return self._queued_pairs

    @property
    def queued_requests(self) -> int:
        return self._queued_requests

    @property
    def alive(self) -> bool:
        return not self._closing and all(thread.is_alive() for thread in self._threads)

    def submit(self, pairs: Sequence[Pair], *, tokenize: Tokenize | None = None, check: Check | None = None) -> Future:
        """Queue ``pairs``; the future gives :class:`Scored`. ``tokenize`` replaces ``encoder.tokenize_pairs``
        for this request; ``check(pairs, encoded)`` may raise to refuse it after tokenizing.

        Raises QueueFull (over ``max_queue_pairs``) or ShuttingDown. Cancelling the future before its
        group starts drops the request unscored.
        """
        if not pairs:
            raise ValueError("no pairs to score")
        if len(pairs) > self.max_queue_pairs:
            raise ValueError(f"{len(pairs)} pairs exceed the queue's {self.max_queue_pairs}; send fewer per request")
        self.start()
        job = _Job(pairs, tokenize, check, Future())
        with self._lock:
            if self._closing or not self.alive:
                raise ShuttingDown("the server is shutting down and admits no new requests")
            if self._queued_pairs + len(pairs) > self.max_queue_pairs:
                raise QueueFull(len(pairs), self._queued_pairs, self.max_queue_pairs, self._retry_after())
            self._queued_pairs += len(pairs)
            self._queued_requests += 1
            self._pending.append(job)
            self._lock.notify_all()
        return job.future

    def _retry_after(self) -> int:
        """Seconds until the queue has drained at the measured rate (1 to 60; 1 before any measurement)."""
        if not self._pairs_per_second:
            return 1
        return max(1, min(60, math.ceil(self._queued_pairs / self._pairs_per_second)))

    def _release(self, job: _Job) -> None:
        with self._lock:
            self._queued_pairs -= len(job.pairs)
            self._queued_requests -= 1
            self._lock.notify_all()

    def _finish(self, job: _Job, result: Scored | None = None, error: BaseException | None = None) -> None:
        self._release(job)  # first: a client that retries on the answer finds room
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start both threads (idempotent; ``submit`` calls it, so a mounted app without lifespan works)."""
        with self._lock:
            if self._threads or self._closing:
                return
            self._threads = [
                threading.Thread(target=self._tokenize_loop, name="crossenc-serve-tokenize", daemon=True),
                threading.Thread(target=self._score_loop, name="crossenc-serve-score", daemon=True),
            ]
            for thread in self._threads:
                thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Admit nothing more, answer everything admitted, stop the threads."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ stage 1: tokenize
    def _take_group(self) -> list[_Job] | None:
        """Every waiting request up to ``max_group_pairs`` (at least one); None once closed and drained."""
        with self._lock:
            while not self._pending and not self._closing:
                self._lock.wait()
            if not self._pending:
                return None
            group, pairs = [], 0
            while self._pending and (not group or pairs + len(self._pending[0].pairs) <= self.max_group_pairs):
                job = self._pending.popleft()
                pairs += len(job.pairs)
                group.append(job)
        started = []
        for job in group:
            if job.future.set_running_or_notify_cancel():
                started.append(job)
            else:  # its client gave up (timeout) before we started: skip the work
                self._release(job)
        return started

    def _tokenize_loop(self) -> None:
        while True:
            self._free_slots.acquire()  # collect a group only when it can be handed over: it merges more
            jobs = self._take_group()
            if jobs is None:
                break
            group = [(job, encoded) for job in jobs if (encoded := self._tokenize(job)) is not None]
            if group:
                self._handoff.put(group)
            else:
                self._free_slots.release()
        self._handoff.put(None)

    def _tokenize(self, job: _Job) -> EncodedPairs | None:
        """Each request alone: as fast as one merged call (measured, docs/serve.md) and errors stay its own."""
        try:
            encoded = (job.tokenize or self.encoder.tokenize_pairs)(job.pairs)
            if job.check is not None:
                job.check(job.pairs, encoded)
            return encoded
        except Exception as error:
            self._finish(job, error=error)
            return None

    # ------------------------------------------------------------------ stage 2: score
    def _score_loop(self) -> None:
        while (group := self._handoff.get()) is not None:
            self._free_slots.release()
            try:
                self._score_group(group)
            except BaseException as error:  # a bug here must not leave clients waiting forever
                logger.exception("scoring a group failed unexpectedly")
                for job, _ in group:
                    if not job.future.done():
                        self._finish(job, error=error)

    def _score_group(self, group: list[tuple[_Job, EncodedPairs]]) -> None:
        started = time.perf_counter()
        merged = concatenate([encoded for _, encoded in group])
        try:
            logits = self._logits(merged)
        except Exception as error:
            if len(group) == 1:
                self._finish(group[0][0], error=error)
                return
            logger.warning("a merged call of %d requests failed (%s); scoring each alone", len(group), error)
            for job, encoded in group:
                self._score_alone(job, encoded)
            self._report(group, merged, started, merged_failed=True)
            return
        self._report(group, merged, started)
        offsets = np.cumsum([0] + [len(encoded) for _, encoded in group])
        for (job, encoded), start, stop in zip(group, offsets[:-1], offsets[1:]):
            self._finish(job, Scored(logits[start:stop], int(encoded.lengths.sum())))

    def _score_alone(self, job: _Job, encoded: EncodedPairs) -> None:
        try:
            result = Scored(self._logits(encoded), int(encoded.lengths.sum()))
        except Exception as error:
            self._finish(job, error=error)
        else:
            self._finish(job, result)

    def _logits(self, encoded: EncodedPairs) -> np.ndarray:
        scores = self.encoder.predict_tokenized(
            encoded, batch_size=self.batch_size, activation_fn=torch.nn.Identity(), show_progress_bar=False
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(encoded), self.encoder.num_labels)

    def _report(self, group: list, merged: EncodedPairs, started: float, merged_failed: bool = False) -> None:
        seconds = time.perf_counter() - started
        padding = getattr(self.encoder, "last_padding", None)
        real = int(merged.lengths.sum())
        padded = getattr(padding, "padded_tokens", real)
        stats = GroupStats(len(group), len(merged), real, padded, seconds, merged_failed)
        if seconds > 0 and not merged_failed:
            rate = len(merged) / seconds
            previous = self._pairs_per_second
            self._pairs_per_second = rate if previous is None else 0.8 * previous + 0.2 * rate  # smoothed
        try:
            self._observe(stats)
        except Exception:
            logger.exception("the metrics observer failed")
