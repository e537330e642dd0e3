"""One scoring pipeline for ``predict``, the server and Ray alike: chunks of tokenized pairs ->
length-sorted token-budget batches -> the backend (several batches in flight where it can) ->
logits scattered back into input order, each batch's rows checked.

The facade (:mod:`crossenc.cross_encoder`) only translates inputs and outputs around it.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from crossenc.batching import PaddingStats, iter_batches
from crossenc.pair_encoding import EncodedPairs
from crossenc.predictor import Predictor
from crossenc.tokenize_ahead import TokenizeAhead, should_tokenize_ahead

Chunks = Iterable[tuple[int, EncodedPairs]]  # (offset of the chunk's first pair, its tokens)


@dataclass(frozen=True)
class BatchPlan:
    """How one call cuts its pairs into batches."""

    batch_size: int
    max_tokens: int
    pad_token_id: int


def text_chunks(
    pairs: list[tuple[str, str]],
    encode: Callable[[list[tuple[str, str]]], EncodedPairs],
    *,
    tokenize_ahead: bool | None,
    device: str,
    chunk_pairs: int,
) -> contextlib.AbstractContextManager[Chunks]:
    """Chunks of ``pairs``: several tokenized ahead on a worker thread while earlier ones are scored, or
    one tokenized now."""
    if should_tokenize_ahead(tokenize_ahead, device, len(pairs), chunk_pairs):
        return TokenizeAhead(encode, pairs, chunk_pairs)
    return contextlib.nullcontext([(0, encode(pairs))])


def score_chunks(
    predictor: Predictor,
    chunks: Chunks,
    num_pairs: int,
    num_labels: int,
    plan: BatchPlan,
    *,
    lock: contextlib.AbstractContextManager | None = None,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, PaddingStats]:
    """Logits ``[num_pairs, num_labels]`` of ``chunks`` in input order, and the padding they cost.

    ``lock`` serialises callers for backends that are not thread-safe; tokenizing (in ``chunks``)
    may already be under way before it is taken.
    """
    logits = np.zeros((num_pairs, num_labels), dtype=np.float32)
    stats = PaddingStats()
    with lock or contextlib.nullcontext(), tqdm(
        total=num_pairs, desc="Scoring", unit="pair", disable=not show_progress_bar
    ) as progress:
        for indices, batch_logits in _run_batches(predictor, _batches(predictor, chunks, plan), stats):
            logits[indices] = _checked_rows(predictor, indices, batch_logits, num_labels)
            progress.update(len(indices))
    return logits, stats


def _batches(predictor: Predictor, chunks: Chunks, plan: BatchPlan) -> Iterator[tuple[np.ndarray, Any]]:
    """One stream of ``(input indices, batch)`` over all chunks: in-flight queues never drain between chunks."""
    for offset, encoded in chunks:
        for indices, batch in iter_batches(
            encoded, predictor.info, batch_size=plan.batch_size, max_tokens=plan.max_tokens,
            pad_token_id=plan.pad_token_id,
        ):
            yield offset + indices, batch


def _run_batches(predictor: Predictor, batches, stats: PaddingStats) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, logits)``; backends with ``predict_many`` keep several batches in flight."""
    predict_many = getattr(predictor, "predict_many", None)
    if predict_many is None:
        for indices, batch in batches:
            stats.add(batch)
            yield indices, predictor.predict_logits(batch)
        return
    pending: collections.deque[np.ndarray] = collections.deque()

    def feed():
        for indices, batch in batches:
            pending.append(indices)
            stats.add(batch)
            yield batch

    backend = predictor.info.backend
    with contextlib.closing(predict_many(feed())) as results:  # an error stops queued work too
        for batch_logits in results:
            if not pending:
                raise RuntimeError(f"{backend} predict_many returned more batches than it was given")
            yield pending.popleft(), batch_logits
    if pending:
        raise RuntimeError(f"{backend} predict_many returned {len(pending)} batch(es) too few")


def _checked_rows(predictor: Predictor, indices: np.ndarray, batch_logits: np.ndarray, num_labels: int) -> np.ndarray:
    if batch_logits.shape != (len(indices), num_labels):
        raise RuntimeError(
            f"{predictor.info.backend} returned logits of shape {tuple(batch_logits.shape)} for a batch of "
            f"{len(indices)} pairs of a {num_labels}-label model"
        )
    return batch_logits
