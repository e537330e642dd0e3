"""Fused (bias +) residual-add + LayerNorm as one Triton kernel, beside its pure-torch reference.

``y = layer_norm(x + bias + residual)``: the tail of both sub-blocks of a post-LN BERT layer,
one read of each input and one write instead of three passes. Statistics in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crossenc.kernels.triton_support import next_power_of_2

try:
    import triton
    import triton.language as tl
except ImportError:  # the gpu extra is not installed: reference only
    triton = None

MAX_FEATURES = 8192  # one row per program must fit in registers


def add_layer_norm_reference(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    norm_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """``layer_norm(x + bias + residual)`` in torch."""
    summed = x + residual if bias is None else x + bias + residual
    return F.layer_norm(summed, (x.shape[-1],), weight, norm_bias, eps)


if triton is not None:

    @triton.jit
    def _add_layer_norm_kernel(
        X, BIAS, RESIDUAL, WEIGHT, NORM_BIAS, Y, n_features, eps, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr
    ):
        row_start = tl.program_id(0).to(tl.int64) * n_features
        columns = tl.arange(0, BLOCK)
        in_row = columns < n_features
        h = tl.load(X + row_start + columns, mask=in_row, other=0.0).to(tl.float32)
        h += tl.load(RESIDUAL + row_start + columns, mask=in_row, other=0.0).to(tl.float32)
        if HAS_BIAS:
            h += tl.load(BIAS + columns, mask=in_row, other=0.0).to(tl.float32)
        mean = tl.sum(h, axis=0) / n_features
        centered = tl.where(in_row, h - mean, 0.0)
        variance = tl.sum(centered * centered, axis=0) / n_features
        normalized = centered / tl.sqrt(variance + eps)
        weight = tl.load(WEIGHT + columns, mask=in_row, other=0.0).to(tl.float32)
        shift = tl.load(NORM_BIAS + columns, mask=in_row, other=0.0).to(tl.float32)
        tl.store(Y + row_start + columns, (normalized * weight + shift).to(Y.dtype.element_ty), mask=in_row)


def add_layer_norm(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    norm_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """Triton ``layer_norm(x + bias + residual)`` over the last dimension of ``[rows, features]``."""
    if triton is None:
        raise ImportError("add_layer_norm needs triton: pip install 'crossenc[gpu]'")
    features = x.shape[-1]
    if residual.shape != x.shape:
        raise ValueError(f"residual has shape {tuple(residual.shape)}; expected {tuple(x.shape)} like x")
    if features > MAX_FEATURES:
        raise ValueError(f"{features} features exceed this kernel's {MAX_FEATURES}; use add_layer_norm_reference")
    x, residual = x.contiguous(), residual.contiguous()
    y = torch.empty_like(x)
    rows = x.numel() // features
    has_bias = bias is not None
    _add_layer_norm_kernel[(rows,)](
        x,
        bias if has_bias else x,  # unused pointer when HAS_BIAS is False
        residual,
        weight,
        norm_bias,
        y,
        features,
        float(eps),
        HAS_BIAS=has_bias,
        BLOCK=next_power_of_2(features),
    )
    return y
