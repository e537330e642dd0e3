"""Tokenize pairs once, sort by token length, cut token-budget batches, scatter back.

Every backend sees the same token ids, truncation and padding: this module is the only
place that decides them. Batches are padded to their own longest member (or to the next
declared bucket for fixed-shape backends), so sorting keeps padding near zero.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from crossenc.pair_encoding import EncodedPairs, PairEncoder, concatenated_ranges
from crossenc.predictor import PackedTokenBatch, PredictorInfo, TokenBatch

DEFAULT_MAX_TOKENS = 16384  # padded tokens per batch on GPUs: 32 x 512, the largest batch_size=32 can need
DEFAULT_MAX_TOKENS_CPU = 1024  # small batches stay in cache: 1.4x the pairs/s of 16384 (docs/gpu-defaults.md)


def default_max_tokens(device: str) -> int:
    """Token budget per batch when the user sets none: small on CPUs (cache), large on GPUs."""
    return DEFAULT_MAX_TOKENS_CPU if device == "cpu" else DEFAULT_MAX_TOKENS


@dataclass
class PaddingStats:
    """Real vs padded tokens over one or more batches."""

    real_tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0

    def add(self, batch: TokenBatch | PackedTokenBatch) -> None:
        self.real_tokens += batch.real_tokens
        self.padded_tokens += batch.padded_tokens
        self.batches += 1

    @property
    def efficiency(self) -> float:
        """Real tokens / padded tokens (1.0 = no padding computed)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def encode_pairs(
    tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, use_token_type_ids: bool
) -> EncodedPairs:
    """Tokenize (query, document) pairs with ``truncation="longest_first"`` and no padding.

    ``tokenizer`` is a Hugging Face fast tokenizer, a ``tokenizers.Tokenizer`` (then its own
    truncation applies) or a :class:`PairEncoder` made once and reused (the fast path).
    """
    encoder = tokenizer if isinstance(tokenizer, PairEncoder) else PairEncoder(tokenizer, max_length)
    return encoder.encode(pairs, use_token_type_ids)


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
    real = np.arange(padded_length) < lengths[:, None]
    positions = concatenated_ranges(encoded.offsets[indices], lengths)  # row by row, as ``real`` is filled
    attention_mask = real.astype(np.int64)
    input_ids = np.full(real.shape, pad_token_id, dtype=np.int64)
    input_ids[real] = encoded.ids[positions]
    token_type_ids = None
    if encoded.type_ids is not None:
        token_type_ids = np.zeros(real.shape, dtype=np.int64)
        token_type_ids[real] = encoded.type_ids[positions]
    return TokenBatch(input_ids, attention_mask, token_type_ids, lengths.astype(np.int64))


def collate_packed(encoded: EncodedPairs, indices: np.ndarray) -> PackedTokenBatch:
    """The pairs at ``indices``, concatenated without padding (for ``is_padded=False`` backends)."""
    lengths = encoded.lengths[indices]
    positions = concatenated_ranges(encoded.offsets[indices], lengths)
    input_ids = encoded.ids[positions].astype(np.int64)
    token_type_ids = encoded.type_ids[positions].astype(np.int64) if encoded.type_ids is not None else None
    return PackedTokenBatch(input_ids, token_type_ids, lengths.astype(np.int64))


def iter_batches(
    encoded: EncodedPairs, info: PredictorInfo, *, batch_size: int, max_tokens: int, pad_token_id: int
) -> Iterator[tuple[np.ndarray, TokenBatch | PackedTokenBatch]]:
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
        if info.is_padded:
            yield indices, collate(encoded, indices, pad_token_id, info.bucket_lengths)
        else:
            yield indices, collate_packed(encoded, indices)
