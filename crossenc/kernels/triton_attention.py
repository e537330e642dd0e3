"""Variable-length (packed) attention as a Triton kernel, beside its pure-torch reference.

One program per (query block, sequence, head) reads that sequence's bounds from
``cu_seqlens`` and streams its keys in blocks with an online softmax (flash-attention
style): no padding, no ``[L, L]`` score matrix in memory. Head sizes 32 and 64. With a
``window`` (sliding-window layers) a query only reads the key blocks that overlap its band
``|i - j| <= window`` and masks the rest.
"""

from __future__ import annotations

import torch

from crossenc.kernels.varlen import VarlenBatch, attention_reference

try:
    import triton
    import triton.language as tl
except ImportError:  # the gpu extra is not installed: reference only
    triton = None

SUPPORTED_HEAD_DIMS = (32, 64)
BLOCK_M = 64  # queries per program
BLOCK_N = 64  # keys per inner step


def varlen_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """Per-sequence softmax(q k^T * scale) v in fp32 torch; same signature as :func:`varlen_attention`."""
    return attention_reference(q, k, v, VarlenBatch(cu_seqlens, max_seqlen), scale, window)


if triton is not None:

    @triton.jit
    def _varlen_attention_kernel(
        Q, K, V, O, CU_SEQLENS,
        stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
        scale, window,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr,
        WINDOWED: tl.constexpr,
    ):  # fmt: skip
        block, sequence, head = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        start = tl.load(CU_SEQLENS + sequence).to(tl.int64)
        length = (tl.load(CU_SEQLENS + sequence + 1) - tl.load(CU_SEQLENS + sequence)).to(tl.int32)
        if block * BLOCK_M < length:
            rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
            dims = tl.arange(0, HEAD_DIM)
            row_ok = rows < length
            q_ptrs = Q + (start + rows)[:, None] * stride_qt + head * stride_qh + dims[None, :]
            q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
            running_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
            running_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
            acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
            key_lo, key_hi = 0, length
            if WINDOWED:  # only key blocks that overlap [first row - window, last row + window]
                key_lo = tl.maximum(block * BLOCK_M - window, 0) // BLOCK_N * BLOCK_N
                key_hi = tl.minimum(block * BLOCK_M + BLOCK_M + window, length)
            for key_start in range(key_lo, key_hi, BLOCK_N):
                keys = key_start + tl.arange(0, BLOCK_N)
                key_ok = keys < length
                k = tl.load(K + (start + keys)[:, None] * stride_kt + head * stride_kh + dims[None, :],
                            mask=key_ok[:, None], other=0.0)  # fmt: skip
                v = tl.load(V + (start + keys)[:, None] * stride_vt + head * stride_vh + dims[None, :],
                            mask=key_ok[:, None], other=0.0)  # fmt: skip
                if IEEE:
                    scores = tl.dot(q, tl.trans(k), input_precision="ieee")
                else:
                    scores = tl.dot(q, tl.trans(k))
                if WINDOWED:
                    distance = tl.abs(rows[:, None] - keys[None, :])
                    scores = tl.where(key_ok[None, :] & (distance <= window), scores * scale, float("-inf"))
                else:
                    scores = tl.where(key_ok[None, :], scores * scale, float("-inf"))
                new_max = tl.maximum(running_max, tl.max(scores, axis=1))
                shift = new_max
                if WINDOWED:  # a row may have seen no key in its band yet: exp(-inf - -inf) would be NaN
                    shift = tl.where(new_max == float("-inf"), 0.0, new_max)
                probs = tl.exp(scores - shift[:, None])
                correction = tl.exp(running_max - shift)
                running_sum = running_sum * correction + tl.sum(probs, axis=1)
                if IEEE:
                    acc = acc * correction[:, None] + tl.dot(probs, v, input_precision="ieee")
                else:
                    acc = acc * correction[:, None] + tl.dot(probs.to(v.dtype), v)
                running_max = new_max
            out = acc / running_sum[:, None]
            o_ptrs = O + (start + rows)[:, None] * stride_ot + head * stride_oh + dims[None, :]
            tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None])


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """Triton attention over packed ``q, k, v`` ``[total_tokens, heads, head_dim]`` (views with unit last stride OK).

    ``cu_seqlens`` int32 ``[sequences + 1]`` on the same device; ``max_seqlen`` bounds the grid,
    so sequences longer than it are only partly computed: pass the true maximum (or more).
    ``window``: token ``i`` attends only to tokens ``j`` of its sequence with ``|i - j| <= window``.
    """
    if triton is None:
        raise ImportError("varlen_attention needs triton: pip install 'crossenc[gpu]'")
    total_tokens, heads, head_dim = q.shape
    if head_dim not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"head_dim {head_dim} not supported by the Triton kernel; supported: {SUPPORTED_HEAD_DIMS}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v shapes differ: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    out = torch.empty(total_tokens, heads, head_dim, dtype=q.dtype, device=q.device)
    sequences = cu_seqlens.numel() - 1
    grid = (triton.cdiv(max(int(max_seqlen), 1), BLOCK_M), sequences, heads)
    _varlen_attention_kernel[grid](
        q, k, v, out, cu_seqlens,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        float(scale), int(window or 0),
        HEAD_DIM=head_dim, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, IEEE=q.dtype == torch.float32,
        WINDOWED=window is not None,
    )  # fmt: skip
    return out
