"""What every variable-length attention shares: the batch's sequence boundaries and the fp32 reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class VarlenBatch:
    """Sequence boundaries of one packed batch, plus per-batch index tensors built on first use.

    ``lengths`` (host) is None inside a CUDA graph, where only ``cu_seqlens`` may be read.
    """

    cu_seqlens: torch.Tensor  # int32 [batch + 1], on the compute device
    max_seqlen: int
    lengths: np.ndarray | None = None  # int64 [batch] on the host
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per batch: shared by all layers of one forward."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def host_lengths(self) -> np.ndarray:
        if self.lengths is None:
            self.lengths = np.diff(self.cu_seqlens.cpu().numpy()).astype(np.int64)
        return self.lengths


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, varlen: VarlenBatch, scale: float, window: int | None = None
):
    """Explicit softmax(q k^T * scale) v per sequence, in fp32. Slow; the ground truth for tests.

    ``window``: token ``i`` attends only to tokens ``j`` with ``|i - j| <= window`` (sliding-window layers).
    """
    out = torch.empty_like(q)
    bounds = varlen.cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (x[start:end].transpose(0, 1).float() for x in (q, k, v))  # [heads, length, dim]
        scores = qs @ ks.transpose(1, 2) * scale
        if window is not None:
            scores = scores.masked_fill(~band_mask(end - start, window, scores.device), float("-inf"))
        out[start:end] = (torch.softmax(scores, dim=-1) @ vs).transpose(0, 1).to(q.dtype)
    return out


def band_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """``[length, length]`` bool, True where ``|i - j| <= window``."""
    positions = torch.arange(length, device=device)
    return (positions[:, None] - positions[None, :]).abs() <= window
