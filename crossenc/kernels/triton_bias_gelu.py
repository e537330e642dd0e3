"""Fused bias-add + GELU as one Triton kernel, beside its pure-torch reference.

``y = gelu(x + bias)`` for ``x`` of shape ``[rows, features]``: saves one full read and write
of the FFN intermediate (the largest activation of a BERT layer). Triton is optional
(``pip install 'crossenc[gpu]'``); without it only the reference exists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # the gpu extra is not installed: reference only
    triton = None

# Hugging Face ``hidden_act`` names this kernel reproduces -> GELU flavour.
GELU_FLAVOURS = {"gelu": "erf", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
BLOCK_SIZE = 1024


def bias_gelu_reference(x: torch.Tensor, bias: torch.Tensor, flavour: str = "erf") -> torch.Tensor:
    """``gelu(x + bias)`` in torch; ``flavour`` "erf" (exact) or "tanh" (approximation)."""
    return F.gelu(x + bias, approximate="tanh" if flavour == "tanh" else "none")


if triton is not None:

    @triton.jit
    def _bias_gelu_kernel(X, BIAS, Y, n_elements, n_features, TANH: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        in_range = offsets < n_elements
        x = tl.load(X + offsets, mask=in_range, other=0.0).to(tl.float32)
        h = x + tl.load(BIAS + offsets % n_features, mask=in_range, other=0.0).to(tl.float32)
        if TANH:
            inner = 0.7978845608028654 * (h + 0.044715 * h * h * h)
            y = 0.5 * h * (1.0 + (2.0 * tl.sigmoid(2.0 * inner) - 1.0))  # tanh(z) = 2 sigmoid(2z) - 1
        else:
            y = 0.5 * h * (1.0 + tl.math.erf(h * 0.7071067811865476))
        tl.store(Y + offsets, y.to(Y.dtype.element_ty), mask=in_range)


def bias_gelu(x: torch.Tensor, bias: torch.Tensor, flavour: str = "erf") -> torch.Tensor:
    """Triton ``gelu(x + bias)``; ``x`` ``[..., features]``, ``bias`` ``[features]``."""
    if triton is None:
        raise ImportError("bias_gelu needs triton: pip install 'crossenc[gpu]'")
    if flavour not in ("erf", "tanh"):
        raise ValueError(f"unknown GELU flavour {flavour!r}; expected 'erf' or 'tanh'")
    if bias.shape != (x.shape[-1],):
        raise ValueError(f"bias has shape {tuple(bias.shape)}; expected ({x.shape[-1]},) to match x")
    x = x.contiguous()
    y = torch.empty_like(x)
    n_elements = x.numel()
    grid = (triton.cdiv(n_elements, BLOCK_SIZE),)
    _bias_gelu_kernel[grid](x, bias.contiguous(), y, n_elements, x.shape[-1], TANH=flavour == "tanh", BLOCK=BLOCK_SIZE)
    return y
