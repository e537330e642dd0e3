"""The per-layer kernels of the packed encoder: pure torch, or Triton-fused on CUDA.

A :class:`PackedOps` bundles the attention chosen at load time (and, for models with
sliding-window layers, the windowed attention) with the two fused tails of a post-LN layer:
``activation(linear(x))`` and ``layer_norm(linear(x) + residual)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from crossenc.kernels.attention import AttentionChoice

DenseAct = Callable[[torch.Tensor, nn.Linear], torch.Tensor]
DenseAddNorm = Callable[[torch.Tensor, nn.Linear, torch.Tensor, nn.LayerNorm], torch.Tensor]


@dataclass(frozen=True)
class PackedOps:
    """The kernels a layer needs."""

    attention: AttentionChoice
    dense_act: DenseAct  # activation(linear(x))
    dense_add_norm: DenseAddNorm  # layer_norm(linear(x) + residual)
    elementwise: str = "torch"  # what dense_act / dense_add_norm use: "torch", "triton", "triton (layer norm only)"
    windowed_attention: AttentionChoice | None = None  # sliding-window layers (ModernBERT local attention)


def torch_ops(
    attention: AttentionChoice,
    activation: Callable[[torch.Tensor], torch.Tensor],
    windowed_attention: AttentionChoice | None = None,
) -> PackedOps:
    """Reference ops, in exactly the Hugging Face order of operations."""

    def dense_act(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        return activation(linear(x))

    def dense_add_norm(x: torch.Tensor, linear: nn.Linear, residual: torch.Tensor, norm: nn.LayerNorm):
        return norm(linear(x) + residual)

    return PackedOps(attention, dense_act, dense_add_norm, "torch", windowed_attention)


def triton_ops(
    attention: AttentionChoice,
    activation: Callable[[torch.Tensor], torch.Tensor],
    hidden_act: str | None,
    windowed_attention: AttentionChoice | None = None,
) -> PackedOps:
    """Bias folded into Triton bias+GELU and residual+LayerNorm kernels after a bias-free matmul.

    Activations other than the GELU flavours the kernel knows stay in torch.
    """
    from crossenc.kernels.triton_bias_gelu import GELU_FLAVOURS, bias_gelu
    from crossenc.kernels.triton_layer_norm import add_layer_norm

    flavour = GELU_FLAVOURS.get(hidden_act or "")

    def dense_act(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        if flavour is None:
            return activation(linear(x))
        return bias_gelu(F.linear(x, linear.weight), linear.bias, flavour)

    def dense_add_norm(x: torch.Tensor, linear: nn.Linear, residual: torch.Tensor, norm: nn.LayerNorm):
        return add_layer_norm(F.linear(x, linear.weight), linear.bias, residual, norm.weight, norm.bias, norm.eps)

    elementwise = "triton" if flavour else f"triton (layer norm only; {hidden_act!r} activation in torch)"
    return PackedOps(attention, dense_act, dense_add_norm, elementwise, windowed_attention)
