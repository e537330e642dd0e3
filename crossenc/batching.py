"""Tokenize pairs once, sort by token length, cut token-budget batches, scatter back.

Every backend sees the same token ids, truncation and padding: this module is the only
place that decides them. Batches are padded to their own longest member (or to the next
declared bucket for fixed-shape backends), so sorting keeps padding near zero.
"""

from __future__ import annotations

import bisect
import copy
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from crossenc.predictor import PredictorInfo, TokenBatch

ENCODE_CHUNK_PAIRS = 2048  # tokenize this many pairs per tokenizer call (bounds Python-list memory)
DEFAULT_MAX_TOKENS = 16384  # padded tokens per batch on GPUs: 32 x 512, the largest batch_size=32 can need
# On CPUs small batches stay in cache: MiniLM-L6 fp32 sdpa on the Debian workload (2-core EPYC, one
# process, 3 interleaved runs) gave 50.7 pairs/s at 16384 tokens, 65.0 at 4096, 70.7 at 2048, 73.0 at
# 1024, ~66 at 512 and 56 at 256. batch_size stays the upper bound on rows.
DEFAULT_MAX_TOKENS_CPU = 1024


def default_max_tokens(device: str) -> int:
    """Token budget per batch when the user sets none: small on CPUs (cache), large on GPUs."""
    return DEFAULT_MAX_TOKENS_CPU if device == "cpu" else DEFAULT_MAX_TOKENS


@dataclass(frozen=True)
class EncodedPairs:
    """Token ids of N pairs, concatenated: pair i is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray  # int32 [total_tokens]
    type_ids: np.ndarray | None  # int8 [total_tokens] or None
    offsets: np.ndarray  # int64 [N + 1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass
class PaddingStats:
    """Real vs padded tokens over one or more batches."""

    real_tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0

    def add(self, batch: TokenBatch) -> None:
        self.real_tokens += batch.real_tokens
        self.padded_tokens += batch.padded_tokens
        self.batches += 1

    @property
    def efficiency(self) -> float:
        """Real tokens / padded tokens (1.0 = no padding computed)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def pair_tokenizer(tokenizer, max_length: int):
    """A private copy of the fast tokenizer's Rust backend, set to truncate pairs like Hugging Face.

    Hugging Face's ``tokenizer(queries, documents, truncation="longest_first", max_length=N)`` sets
    exactly this truncation on its backend and calls ``encode_batch``; calling the backend
    directly gives the same ids without building Python lists for every field (several times
    faster, which matters once the GPU scores thousands of pairs a second). Never mutated after
    this, so concurrent encodes are safe.
    """
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.enable_truncation(max_length, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
    return backend


def encode_pairs(
    tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, use_token_type_ids: bool
) -> EncodedPairs:
    """Tokenize (query, document) pairs with ``truncation="longest_first"`` and no padding.

    ``tokenizer`` is a Hugging Face fast tokenizer or the backend made by :func:`pair_tokenizer`
    (then ``max_length`` is already part of it).
    """
    backend = pair_tokenizer(tokenizer, max_length)
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    id_chunks: list[np.ndarray] = []
    type_chunks: list[np.ndarray] = []
    lengths = np.zeros(len(pairs), dtype=np.int64)
    for start in range(0, len(pairs), ENCODE_CHUNK_PAIRS):
        encodings = encode([(pair[0], pair[1]) for pair in pairs[start : start + ENCODE_CHUNK_PAIRS]])
        ids = [encoding.ids for encoding in encodings]
        lengths[start : start + len(ids)] = [len(row) for row in ids]
        id_chunks.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32))
        if use_token_type_ids:
            types = itertools.chain.from_iterable(encoding.type_ids for encoding in encodings)
            type_chunks.append(np.fromiter(types, dtype=np.int8))
    offsets = np.zeros(len(pairs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(id_chunks) if id_chunks else np.zeros(0, np.int32)
    type_ids = (np.concatenate(type_chunks) if type_chunks else np.zeros(0, np.int8)) if use_token_type_ids else None
    return EncodedPairs(ids=ids, type_ids=type_ids, offsets=offsets)


def round_up_to_bucket(length: int, bucket_lengths: Sequence[int] | None) -> int:
    """Smallest declared bucket >= length (the length itself when there are no buckets)."""
    if not bucket_lengths:
        return length
    position = bisect.bisect_left(bucket_lengths, length)
    if position == len(bucket_lengths):
        raise ValueError(f"sequence of {length} tokens exceeds the largest bucket {bucket_lengths[-1]}")
    return int(bucket_lengths[position])


def plan_batches(
    lengths: np.ndarray,
    *,
    batch_size: int,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    is_padded: bool = True,
    bucket_lengths: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Group pair indices into batches, longest first.

    A batch holds at most ``batch_size`` pairs and costs at most ``max_tokens`` tokens:
    ``rows * padded_length`` for padded backends, ``sum(lengths)`` for packed ones. A single
    pair longer than the budget still gets a batch of its own.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens}")
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = round_up_to_bucket(int(lengths[order[start]]), bucket_lengths)
        if is_padded:
            rows = max(1, min(batch_size, max_tokens // max(longest, 1)))
        else:
            cumulative = np.cumsum(lengths[order[start : start + batch_size]])
            rows = max(1, int(np.searchsorted(cumulative, max_tokens, side="right")))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def collate(
    encoded: EncodedPairs, indices: np.ndarray, pad_token_id: int, bucket_lengths: Sequence[int] | None = None
) -> TokenBatch:
    """Build the padded arrays for the pairs at ``indices``."""
    lengths = encoded.lengths[indices]
    padded_length = round_up_to_bucket(int(lengths.max()), bucket_lengths)
    rows = len(indices)
    input_ids = np.full((rows, padded_length), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((rows, padded_length), dtype=np.int64)
    token_type_ids = np.zeros((rows, padded_length), dtype=np.int64) if encoded.type_ids is not None else None
    for row, (pair_index, length) in enumerate(zip(indices, lengths)):
        begin = encoded.offsets[pair_index]
        input_ids[row, :length] = encoded.ids[begin : begin + length]
        attention_mask[row, :length] = 1
        if token_type_ids is not None:
            token_type_ids[row, :length] = encoded.type_ids[begin : begin + length]
    return TokenBatch(input_ids, attention_mask, token_type_ids, lengths.astype(np.int64))


def iter_batches(
    encoded: EncodedPairs, info: PredictorInfo, *, batch_size: int, max_tokens: int, pad_token_id: int
) -> Iterator[tuple[np.ndarray, TokenBatch]]:
    """Yield ``(indices, batch)`` in execution order for a backend described by ``info``."""
    effective_batch_size = min(batch_size, info.max_batch_size) if info.max_batch_size else batch_size
    plans = plan_batches(
        encoded.lengths,
        batch_size=effective_batch_size,
        max_tokens=max_tokens,
        is_padded=info.is_padded,
        bucket_lengths=info.bucket_lengths,
    )
    for indices in plans:
        yield indices, collate(encoded, indices, pad_token_id, info.bucket_lengths)
