"""The Predictor protocol every backend implements, and the token batch it consumes.

Nothing here imports an ML framework: backends take numpy token arrays and return fp32
logits. Sorting, activation, softmax and ranking live above this layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TokenBatch:
    """One padded batch of tokenized pairs, rows padded to the batch's own longest member.

    ``lengths[i]`` is the number of real tokens of row ``i``; ``attention_mask`` is 1 on
    those positions and 0 on padding. ``token_type_ids`` is None for models without it.
    """

    input_ids: np.ndarray  # int64 [batch, seq]
    attention_mask: np.ndarray  # int64 [batch, seq]
    token_type_ids: np.ndarray | None  # int64 [batch, seq] or None
    lengths: np.ndarray  # int64 [batch]

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def padded_length(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def real_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def padded_tokens(self) -> int:
        return self.batch_size * self.padded_length


def running_offsets(lengths: np.ndarray, dtype: type = np.int64) -> np.ndarray:
    """``[0, l0, l0 + l1, ...]``: where each of the concatenated sequences starts, and the total
    (int32 is the ``cu_seqlens`` layout flash-attn and the Triton kernels read)."""
    offsets = np.zeros(len(lengths) + 1, dtype=dtype)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


@dataclass(frozen=True)
class PackedTokenBatch:
    """One batch without padding, what backends with ``is_padded=False`` receive.

    Row ``i`` is ``input_ids[offsets[i]:offsets[i] + lengths[i]]`` with ``offsets`` the running
    sum of ``lengths``; nothing is padded, so ``padded_tokens == real_tokens``.
    """

    input_ids: np.ndarray  # int64 [total_tokens]
    token_type_ids: np.ndarray | None  # int64 [total_tokens] or None
    lengths: np.ndarray  # int64 [batch]

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def real_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def padded_tokens(self) -> int:
        return self.real_tokens


@dataclass(frozen=True)
class PredictorInfo:
    """What a backend declares about itself; the batcher and facade read only this."""

    backend: str  # "torch", "onnx", "openvino", ...
    variant: str  # "sdpa", "bf16", "int8", "optimized", ...
    device: str  # "cpu", "cuda:0", ...
    precision: str  # "fp32", "bf16", "fp16", "int8"
    max_length: int  # longest sequence the backend accepts
    num_labels: int
    is_padded: bool = True  # False: cost of a batch is sum(lengths), not batch * longest
    bucket_lengths: tuple[int, ...] | None = None  # fixed-shape backends: pad up to one of these
    max_batch_size: int | None = None
    thread_safe: bool = False  # True: predict_logits may be called from several threads at once
    details: dict[str, Any] = field(default_factory=dict)  # free-form: providers, attention kernel, ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Predictor(Protocol):
    """A loaded model that scores token batches. Implementations live in ``crossenc.backends``."""

    info: PredictorInfo

    def predict_logits(self, batch: TokenBatch) -> np.ndarray:
        """Run one batch; return float32 logits of shape ``[batch, num_labels]``.

        Backends declaring ``is_padded=False`` receive :class:`PackedTokenBatch` from the batcher
        (and still accept a padded :class:`TokenBatch`).
        """
        ...


# Optional: a backend that can keep several batches in flight (OpenVINO's AsyncInferQueue, ...)
# also defines ``predict_many(batches: Iterable[TokenBatch]) -> Iterator[np.ndarray]``, yielding
# logits in submission order. The facade uses it when present; predict_logits stays required.
