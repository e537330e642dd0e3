"""CUDA graphs for the packed encoder: one graph per token-budget bucket, replayed per batch.

A packed batch's shape is its total token count, so a batch of ``T`` tokens runs in the
graph captured for the smallest bucket ``>= T``. The spare rows are filled with dummy
sequences (each at most ``max_seqlen`` long, so every attention kernel covers them) whose
outputs are discarded; spare sequence slots get length 0. Graphs are captured lazily, on
the first batch that needs a bucket; if a capture fails the runner logs why and the caller
runs eagerly from then on.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from crossenc.backends.torch_backend.in_flight import host_tensor
from crossenc.kernels.attention import VarlenBatch
from crossenc.kernels.packed_model import PackedEncoder, PackedModernBertEncoder
from crossenc.kernels.packing import PackedTokens
from crossenc.predictor import running_offsets

log = logging.getLogger(__name__)


def token_buckets(smallest: int = 512, largest: int = 32768) -> tuple[int, ...]:
    """Bucket sizes growing by about sqrt(2) (512, 768, 1024, 1536, ...): at most ~41% padding rows."""
    buckets, size = [], smallest
    while size < largest:
        buckets.append(size)
        buckets.append(min(largest, size * 3 // 2))
        size *= 2
    return tuple(sorted(set(buckets + [largest])))


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]  # static input buffers, refilled before each replay
    logits: torch.Tensor  # static output [max_sequences, num_labels]


class CudaGraphRunner:
    """Captures and replays the encoder per bucket; ``run`` returns None when it cannot help."""

    def __init__(
        self,
        encoder: PackedEncoder | PackedModernBertEncoder,
        device: torch.device,
        *,
        max_seqlen: int,
        max_batch: int,
        buckets: tuple[int, ...],
        pad_token_id: int,
        pad_position: int,
        pin_inputs: bool = False,
    ) -> None:
        for attention in (encoder.ops.attention, encoder.ops.windowed_attention):
            if attention is not None and not attention.graph_safe:
                raise ValueError(f"attention {attention.name!r} reads host lengths; it cannot run in a graph")
        self.encoder, self.device = encoder, device
        self.max_seqlen, self.max_batch, self.buckets = max_seqlen, max_batch, buckets
        self.max_sequences = max_batch + math.ceil(buckets[-1] / max_seqlen) + 1
        self.pad_token_id, self.pad_position = pad_token_id, pad_position
        self.pin_inputs = pin_inputs
        self.graphs: dict[int, _Graph] = {}
        self.pool = None
        self.disabled_reason: str | None = None

    def bucket_for(self, tokens: PackedTokens) -> int | None:
        """Smallest bucket holding the batch, or None (too many tokens or sequences, or disabled)."""
        if self.disabled_reason or len(tokens.lengths) > self.max_batch or tokens.max_seqlen > self.max_seqlen:
            return None
        position = int(np.searchsorted(self.buckets, tokens.total_tokens))
        return self.buckets[position] if position < len(self.buckets) else None

    def run(self, tokens: PackedTokens) -> torch.Tensor | None:
        """Logits ``[batch, num_labels]`` from a graph replay, or None: run eagerly instead."""
        bucket = self.bucket_for(tokens)
        if bucket is None:
            return None
        entry = self.graphs.get(bucket) or self._capture(bucket)
        if entry is None:
            return None
        for name, array in self._host_inputs(tokens, bucket).items():
            # stream-ordered after earlier replays; from pinned memory it is queued, not waited for
            entry.inputs[name].copy_(host_tensor(array, self.pin_inputs), non_blocking=True)
        entry.graph.replay()
        return entry.logits[: len(tokens.lengths)]

    def _host_inputs(self, tokens: PackedTokens, bucket: int) -> dict[str, np.ndarray]:
        """Batch padded to ``bucket`` rows (dummy sequences) and ``max_sequences`` slots (empty ones)."""
        spare = bucket - tokens.total_tokens
        full, rest = divmod(spare, self.max_seqlen)
        dummy = [self.max_seqlen] * full + ([rest] if rest else [])
        lengths = np.zeros(self.max_sequences, dtype=np.int64)
        lengths[: len(tokens.lengths)] = tokens.lengths
        lengths[len(tokens.lengths) : len(tokens.lengths) + len(dummy)] = dummy
        cu_seqlens = running_offsets(lengths, np.int32)
        first_index = np.zeros(self.max_sequences, dtype=np.int64)
        first_index[: len(tokens.lengths)] = tokens.cu_seqlens[:-1]

        def padded(values: np.ndarray, fill: int) -> np.ndarray:
            return np.concatenate([values, np.full(spare, fill, dtype=np.int64)])

        return {
            "input_ids": padded(tokens.input_ids, self.pad_token_id),
            "token_type_ids": padded(tokens.token_type_ids, 0),
            "position_ids": padded(tokens.position_ids, self.pad_position),
            "cu_seqlens": cu_seqlens,
            "first_index": first_index,
        }

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        varlen = VarlenBatch(inputs["cu_seqlens"], self.max_seqlen)
        return self.encoder(
            inputs["input_ids"], inputs["token_type_ids"], inputs["position_ids"], varlen, inputs["first_index"]
        )

    def _capture(self, bucket: int) -> _Graph | None:
        """Warm up (Triton compiles, cuBLAS picks kernels) on a side stream, then capture."""
        empty = PackedTokens(*(np.zeros(0, np.int64) for _ in range(3)), np.zeros(1, np.int32), np.zeros(0, np.int64))
        host = self._host_inputs(empty, bucket)
        inputs = {name: torch.from_numpy(array).to(self.device) for name, array in host.items()}
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._forward(inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # One memory pool for all buckets: safe because replays never overlap (one stream; the
            # predictor is not thread-safe) and each replay's logits are copied out, in stream
            # order, before the next replay is enqueued.
            self.pool = self.pool or torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self.pool):
                logits = self._forward(inputs)
        except Exception as error:  # capture is best effort: any failure means eager from now on
            self.disabled_reason = f"capture of the {bucket}-token graph failed: {type(error).__name__}: {error}"
            log.warning("crossenc packed: %s; running eagerly", self.disabled_reason)
            with contextlib.suppress(Exception):
                torch.cuda.synchronize(self.device)
            return None
        self.graphs[bucket] = _Graph(graph, inputs, logits)
        return self.graphs[bucket]
