"""Padding-free BERT-family encoder built from a Hugging Face ``*ForSequenceClassification`` model.

Tokens of all sequences are concatenated into one ``[total_tokens, hidden]`` matrix; every
projection runs on real tokens only and attention is variable-length over ``cu_seqlens``.
The Hugging Face sub-modules (embeddings, dense layers, LayerNorms, activation) are reused
as they are, so fp32 results match the original model; only Q, K and V are fused into one
projection. The last layer runs for each sequence's first token only (keys and values from all
tokens): the head reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from crossenc.kernels.attention import ATTENTION, CPU_DEFAULT, VarlenBatch
from crossenc.kernels.ops import PackedOps, torch_ops


@dataclass(frozen=True)
class Architecture:
    """Where a model family keeps its encoder and head, and how it numbers positions."""

    encoder_attribute: str  # "bert" -> model.bert
    head: str  # "bert-pooler": pooler.dense + classifier; "roberta-head": classifier.dense + out_proj
    position_style: str  # see crossenc.kernels.packing.position_ids_packed


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture("bert", "bert-pooler", "absolute"),
    "roberta": Architecture("roberta", "roberta-head", "padding_offset"),
    "xlm-roberta": Architecture("roberta", "roberta-head", "padding_offset"),
    "camembert": Architecture("roberta", "roberta-head", "padding_offset"),
}


def architecture_for(config) -> Architecture:
    """The packed layout for ``config``; ValueError naming the model_type when unsupported."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"packed variants support model_type {sorted(ARCHITECTURES)}; this checkpoint is {model_type!r}. "
            "Use variant='sdpa' (or another padded variant) for it."
        )
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise ValueError(
            f"packed variants need absolute position embeddings; this {model_type} checkpoint uses "
            f"{config.position_embedding_type!r}. Use variant='sdpa'."
        )
    if getattr(config, "is_decoder", False):
        raise ValueError(f"packed variants need a bidirectional encoder; this {model_type} config has is_decoder=True")
    return ARCHITECTURES[model_type]


# ----------------------------------------------------------------------------- modules
class PackedLayer(nn.Module):
    """One post-LayerNorm transformer layer on packed tokens, reusing the HF layer's weights."""

    def __init__(self, hf_layer: nn.Module, num_heads: int) -> None:
        super().__init__()
        attention = hf_layer.attention.self
        projections = (attention.query, attention.key, attention.value)
        self.qkv_weight = nn.Parameter(torch.cat([p.weight.detach() for p in projections]), requires_grad=False)
        self.qkv_bias = nn.Parameter(torch.cat([p.bias.detach() for p in projections]), requires_grad=False)
        self.num_heads = num_heads
        self.head_dim = attention.query.out_features // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_out = hf_layer.attention.output.dense
        self.attn_norm = hf_layer.attention.output.LayerNorm
        self.ffn_in = hf_layer.intermediate.dense
        self.ffn_out = hf_layer.output.dense
        self.ffn_norm = hf_layer.output.LayerNorm

    def forward(self, hidden: torch.Tensor, varlen: VarlenBatch, ops: PackedOps) -> torch.Tensor:
        total_tokens = hidden.shape[0]
        qkv = F.linear(hidden, self.qkv_weight, self.qkv_bias).view(total_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.unbind(1)
        context = ops.attention.function(query, key, value, varlen, self.scale).reshape(total_tokens, -1)
        attended = ops.dense_add_norm(context, self.attn_out, hidden, self.attn_norm)
        intermediate = ops.dense_act(attended, self.ffn_in)
        return ops.dense_add_norm(intermediate, self.ffn_out, attended, self.ffn_norm)

    def forward_first_tokens(
        self, hidden: torch.Tensor, varlen: VarlenBatch, ops: PackedOps, first_index: torch.Tensor
    ) -> torch.Tensor:
        """This layer's output ``[sequences, hidden]`` at each sequence's first token only.

        Keys and values come from every token; the query, attention output and FFN run for the
        first tokens alone (what the classification head reads). Attention is one query per
        sequence: scores per token, a softmax per segment, a weighted sum per segment.
        """
        total_tokens, width = hidden.shape[0], hidden.shape[1]
        key_value = F.linear(hidden, self.qkv_weight[width:], self.qkv_bias[width:])
        key, value = key_value.view(total_tokens, 2, self.num_heads, self.head_dim).unbind(1)
        first = hidden.index_select(0, first_index)
        query = F.linear(first, self.qkv_weight[:width], self.qkv_bias[:width]).view(-1, self.num_heads, self.head_dim)
        context = first_token_attention(query, key, value, varlen.cu_seqlens, self.scale).to(hidden.dtype)
        attended = ops.dense_add_norm(context.reshape(len(first_index), -1), self.attn_out, first, self.attn_norm)
        intermediate = ops.dense_act(attended, self.ffn_in)
        return ops.dense_add_norm(intermediate, self.ffn_out, attended, self.ffn_norm)


def first_token_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor, scale: float
) -> torch.Tensor:
    """softmax(q_s . k_t * scale) v_t over the tokens t of each sequence s; one query per sequence, fp32.

    ``query`` [sequences, heads, dim]; ``key``/``value`` [tokens, heads, dim]. Device-side only (no
    host sync), so it runs inside CUDA graphs; an empty sequence gets a zero context.
    """
    total_tokens, sequences = key.shape[0], query.shape[0]
    token_positions = torch.arange(total_tokens, device=key.device, dtype=cu_seqlens.dtype)
    owner = torch.searchsorted(cu_seqlens[1:].contiguous(), token_positions, right=True)  # sequence of each token
    scores = (query.float().index_select(0, owner) * key.float()).sum(-1) * scale  # [tokens, heads]
    peak = torch.full((sequences, scores.shape[1]), float("-inf"), device=key.device)
    peak = peak.scatter_reduce(0, owner[:, None].expand_as(scores), scores, reduce="amax", include_self=True)
    weights = torch.exp(scores - peak.index_select(0, owner))
    totals = torch.zeros_like(peak).index_add_(0, owner, weights)
    context = torch.zeros(sequences, *value.shape[1:], device=key.device).index_add_(
        0, owner, weights[..., None] * value.float()
    )
    return context / totals.clamp_min(torch.finfo(torch.float32).tiny)[..., None]


class PackedEncoder(nn.Module):
    """Embeddings -> packed layers (the last for first tokens only) -> dense + tanh -> classifier."""

    def __init__(self, hf_model: nn.Module, architecture: Architecture, ops: PackedOps | None) -> None:
        super().__init__()
        config = hf_model.config
        encoder = getattr(hf_model, architecture.encoder_attribute)
        embeddings = encoder.embeddings
        self.word_embeddings = embeddings.word_embeddings
        self.position_embeddings = embeddings.position_embeddings
        self.token_type_embeddings = embeddings.token_type_embeddings
        self.embedding_norm = embeddings.LayerNorm
        self.layers = nn.ModuleList(PackedLayer(layer, config.num_attention_heads) for layer in encoder.encoder.layer)
        self.head_dense, self.classifier = _head_modules(hf_model, encoder, architecture)
        self.activation = encoder.encoder.layer[0].intermediate.intermediate_act_fn
        self.hidden_act = config.hidden_act if isinstance(config.hidden_act, str) else None
        self.position_style = architecture.position_style
        self.ops = ops

    @property
    def head_dim(self) -> int:
        return self.layers[0].head_dim

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
        varlen: VarlenBatch,
        first_index: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``[sequences, num_labels]`` from packed ids ``[total_tokens]``; ``first_index``: sequence starts."""
        hidden = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        hidden = self.embedding_norm(hidden + self.position_embeddings(position_ids))
        for layer in self.layers[:-1]:
            hidden = layer(hidden, varlen, self.ops)
        first_tokens = self.layers[-1].forward_first_tokens(hidden, varlen, self.ops, first_index)
        return self.classifier(torch.tanh(self.head_dense(first_tokens)))


def _head_modules(hf_model: nn.Module, encoder: nn.Module, architecture: Architecture) -> tuple[nn.Linear, nn.Linear]:
    """(dense before tanh, final projection) of the classification head."""
    if architecture.head == "bert-pooler":
        if getattr(encoder, "pooler", None) is None:
            raise ValueError("this BERT checkpoint has no pooler; the packed head needs pooler.dense")
        return encoder.pooler.dense, hf_model.classifier
    return hf_model.classifier.dense, hf_model.classifier.out_proj


def build_packed_encoder(hf_model: nn.Module) -> PackedEncoder:
    """Wrap ``hf_model`` (BERT/RoBERTa/XLM-R ``*ForSequenceClassification``) as a :class:`PackedEncoder`.

    It starts with pure-torch ops and CPU attention; assign ``encoder.ops`` to change kernels.
    """
    architecture = architecture_for(hf_model.config)
    encoder = PackedEncoder(hf_model, architecture, None).eval()
    encoder.ops = torch_ops(ATTENTION[CPU_DEFAULT], encoder.activation)
    return encoder
