"""Packed (padding-free) token arrays plus ``cu_seqlens``, from a padded or already packed batch.

Row ``i`` of a padded batch contributes its first ``lengths[i]`` tokens; the packed arrays
concatenate them in row order. Position ids restart at every sequence, the way the Hugging
Face model would number them in its own padded forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossenc.predictor import PackedTokenBatch, TokenBatch, running_offsets

POSITION_STYLES = ("absolute", "padding_offset")


@dataclass(frozen=True)
class PackedTokens:
    """Host-side packed inputs of one batch; ``cu_seqlens[i]:cu_seqlens[i+1]`` is sequence ``i``."""

    input_ids: np.ndarray  # int64 [total_tokens]
    token_type_ids: np.ndarray  # int64 [total_tokens]
    position_ids: np.ndarray  # int64 [total_tokens]
    cu_seqlens: np.ndarray  # int32 [batch + 1]
    lengths: np.ndarray  # int64 [batch]

    @property
    def total_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def max_seqlen(self) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0


def position_ids_packed(input_ids: np.ndarray, lengths: np.ndarray, style: str, pad_token_id: int) -> np.ndarray:
    """Position ids of concatenated sequences, as the Hugging Face embeddings number a padded batch.

    ``absolute`` (BERT): ``0, 1, 2, ...`` per sequence. ``padding_offset`` (RoBERTa family):
    non-pad tokens count from ``pad_token_id + 1`` per sequence; pad tokens get ``pad_token_id``.
    """
    starts = np.repeat(running_offsets(lengths)[:-1], lengths)
    if style == "absolute":
        return np.arange(len(input_ids), dtype=np.int64) - starts
    if style == "padding_offset":
        not_pad = (input_ids != pad_token_id).astype(np.int64)
        running = np.cumsum(not_pad)
        before = np.concatenate([[0], running])[starts]  # count up to each sequence's start
        return (running - before) * not_pad + pad_token_id
    raise ValueError(f"unknown position style {style!r}; expected one of {POSITION_STYLES}")


def pack_batch(batch: TokenBatch | PackedTokenBatch, position_style: str, pad_token_id: int) -> PackedTokens:
    """Packed arrays of ``batch``: a padded row ``i`` contributes its first ``lengths[i]`` positions.

    A :class:`PackedTokenBatch` has no padding to drop: only position ids and ``cu_seqlens`` are added.
    """
    if isinstance(batch, TokenBatch):
        batch = unpad(batch)
    lengths = np.asarray(batch.lengths, dtype=np.int64)
    if len(lengths) and lengths.min() < 1:
        raise ValueError(f"every sequence needs at least one token; got lengths down to {lengths.min()}")
    if int(lengths.sum()) != len(batch.input_ids):
        raise ValueError(f"lengths add up to {int(lengths.sum())} tokens but the batch holds {len(batch.input_ids)}")
    input_ids = batch.input_ids.astype(np.int64, copy=False)
    types = batch.token_type_ids
    return PackedTokens(
        input_ids=input_ids,
        token_type_ids=np.zeros_like(input_ids) if types is None else types.astype(np.int64, copy=False),
        position_ids=position_ids_packed(input_ids, lengths, position_style, pad_token_id),
        cu_seqlens=running_offsets(lengths, np.int32),
        lengths=lengths,
    )


def unpad(batch: TokenBatch) -> PackedTokenBatch:
    """The real tokens of a padded batch, concatenated in row order."""
    lengths = np.asarray(batch.lengths, dtype=np.int64)
    if lengths.ndim != 1 or len(lengths) != batch.batch_size:
        raise ValueError(f"lengths has shape {lengths.shape}; expected ({batch.batch_size},)")
    if len(lengths) and (lengths.min() < 1 or lengths.max() > batch.padded_length):
        raise ValueError(
            f"lengths must lie in [1, {batch.padded_length}] (the padded length); got {lengths.min()}..{lengths.max()}"
        )
    real = np.arange(batch.padded_length) < lengths[:, None]
    types = None if batch.token_type_ids is None else batch.token_type_ids[real]
    return PackedTokenBatch(batch.input_ids[real], types, lengths)
