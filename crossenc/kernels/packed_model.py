"""Padding-free encoders built from a Hugging Face ``*ForSequenceClassification`` model.

Tokens of all sequences are concatenated into one ``[total_tokens, hidden]`` matrix; every
projection runs on real tokens only and attention is variable-length over ``cu_seqlens``.
The Hugging Face sub-modules (embeddings, dense layers, LayerNorms, activation, heads) are reused
as they are, so fp32 results match the original model; only Q, K and V are fused into one
projection. Where the head reads only each sequence's first token, the last layer runs for those
tokens only (keys and values from all tokens).

Families (:data:`ARCHITECTURES`): post-LayerNorm BERT-style layers (BERT, RoBERTa, XLM-R,
CamemBERT, ELECTRA, DistilBERT) run in :class:`PackedEncoder`; ModernBERT (pre-norm, rotary
positions, sliding-window local layers, GLU MLP, cls or mean pooling) in :class:`PackedModernBertEncoder`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from crossenc.kernels.attention import ATTENTION, CPU_DEFAULT, VarlenBatch, select_windowed_attention
from crossenc.kernels.ops import PackedOps, torch_ops


@dataclass(frozen=True)
class Architecture:
    """Where a model family keeps its encoder, layers and head, and how it numbers positions."""

    encoder_attribute: str  # "bert" -> model.bert
    head: str  # see FirstTokenHead / PackedModernBertEncoder: which HF modules score the pooled vector
    position_style: str  # see crossenc.kernels.packing.position_ids_packed
    layout: str = "bert"  # module names of a layer: "bert" (attention.self.query, ...), "distilbert", "modernbert"


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture("bert", "bert-pooler", "absolute"),
    "roberta": Architecture("roberta", "roberta-head", "padding_offset"),
    "xlm-roberta": Architecture("roberta", "roberta-head", "padding_offset"),
    "camembert": Architecture("roberta", "roberta-head", "padding_offset"),
    "electra": Architecture("electra", "electra-head", "absolute"),
    "distilbert": Architecture("distilbert", "distilbert-head", "absolute", "distilbert"),
    "modernbert": Architecture("model", "modernbert-head", "absolute", "modernbert"),
}
MODERNBERT_POOLING = ("cls", "mean")


# why a family has no packed layout (the support matrix shows it); others get the generic sentence
NOT_PACKED_BECAUSE = {
    "albert": "no packed layout for ALBERT's shared layer groups and embedding projection yet",
    "mpnet": "MPNet adds a relative position bias inside attention, which the varlen kernels do not take",
    "deberta-v2": "DeBERTa adds disentangled relative-position terms inside attention, which the varlen kernels "
                  "do not take",
    "qwen2": "decoders attend causally and pool the last token; the packed encoders are bidirectional",
    "qwen3": "decoders attend causally and pool the last token; the packed encoders are bidirectional",
}


def architecture_for(config) -> Architecture:
    """The packed layout for ``config``; ValueError naming the model_type (and why, where known) when unsupported."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        because = f" ({NOT_PACKED_BECAUSE[model_type]})" if model_type in NOT_PACKED_BECAUSE else ""
        raise ValueError(
            f"packed variants support model_type {sorted(ARCHITECTURES)}; this checkpoint is {model_type!r}"
            f"{because}. Use variant='sdpa' (or another padded variant) for it."
        )
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise ValueError(
            f"packed variants need absolute position embeddings; this {model_type} checkpoint uses "
            f"{config.position_embedding_type!r}. Use variant='sdpa'."
        )
    if getattr(config, "is_decoder", False):
        raise ValueError(f"packed variants need a bidirectional encoder; this {model_type} config has is_decoder=True")
    if model_type == "modernbert":
        _check_modernbert(config)
    return ARCHITECTURES[model_type]


def _check_modernbert(config) -> None:
    """ModernBERT options the packed encoder reproduces: cls/mean pooling, default (fixed) rotary frequencies."""
    if config.classifier_pooling not in MODERNBERT_POOLING:
        raise ValueError(
            f"packed variants support modernbert classifier_pooling {list(MODERNBERT_POOLING)}; this checkpoint "
            f"uses {config.classifier_pooling!r}. Use variant='sdpa'."
        )
    for layer_type in sorted(set(config.layer_types)):
        rope_type = (config.rope_parameters.get(layer_type) or {}).get("rope_type", "default")
        if rope_type != "default":
            raise ValueError(
                f"packed variants support modernbert rotary embeddings of rope_type 'default'; this checkpoint's "
                f"{layer_type} layers use {rope_type!r}. Use variant='sdpa'."
            )


# ----------------------------------------------------------------------------- post-LayerNorm families
def _post_norm_parts(hf_layer: nn.Module, layout: str) -> tuple[nn.Module, ...]:
    """(query, key, value, attention output, its LayerNorm, FFN in, FFN out, its LayerNorm) of one HF layer."""
    if layout == "distilbert":
        attention, ffn = hf_layer.attention, hf_layer.ffn
        return (attention.q_lin, attention.k_lin, attention.v_lin, attention.out_lin, hf_layer.sa_layer_norm,
                ffn.lin1, ffn.lin2, hf_layer.output_layer_norm)  # fmt: skip
    attention = hf_layer.attention
    return (attention.self.query, attention.self.key, attention.self.value, attention.output.dense,
            attention.output.LayerNorm, hf_layer.intermediate.dense, hf_layer.output.dense,
            hf_layer.output.LayerNorm)  # fmt: skip


class PackedLayer(nn.Module):
    """One post-LayerNorm transformer layer on packed tokens, reusing the HF layer's weights."""

    def __init__(self, hf_layer: nn.Module, num_heads: int, layout: str = "bert") -> None:
        super().__init__()
        query, key, value, attn_out, attn_norm, ffn_in, ffn_out, ffn_norm = _post_norm_parts(hf_layer, layout)
        projections = (query, key, value)
        self.qkv_weight = nn.Parameter(torch.cat([p.weight.detach() for p in projections]), requires_grad=False)
        self.qkv_bias = nn.Parameter(torch.cat([p.bias.detach() for p in projections]), requires_grad=False)
        self.num_heads = num_heads
        self.head_dim = query.out_features // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_out = attn_out
        self.attn_norm = attn_norm
        self.ffn_in = ffn_in
        self.ffn_out = ffn_out
        self.ffn_norm = ffn_norm

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


def sequence_owner(cu_seqlens: torch.Tensor, total_tokens: int) -> torch.Tensor:
    """The sequence index of every packed token (device-side, no host sync)."""
    token_positions = torch.arange(total_tokens, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    return torch.searchsorted(cu_seqlens[1:].contiguous(), token_positions, right=True)


def first_token_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    scale: float,
    window: int | None = None,
) -> torch.Tensor:
    """softmax(q_s . k_t * scale) v_t over the tokens t of each sequence s; one query per sequence, fp32.

    ``query`` [sequences, heads, dim]; ``key``/``value`` [tokens, heads, dim]. Device-side only (no
    host sync), so it runs inside CUDA graphs; an empty sequence gets a zero context. ``window``:
    only tokens at most ``window`` positions after the first one count (a sliding-window layer).
    """
    total_tokens, sequences = key.shape[0], query.shape[0]
    owner = sequence_owner(cu_seqlens, total_tokens)
    scores = (query.float().index_select(0, owner) * key.float()).sum(-1) * scale  # [tokens, heads]
    if window is not None:
        token_positions = torch.arange(total_tokens, device=key.device, dtype=cu_seqlens.dtype)
        outside = token_positions - cu_seqlens.index_select(0, owner) > window
        scores = scores.masked_fill(outside[:, None], float("-inf"))
    peak = torch.full((sequences, scores.shape[1]), float("-inf"), device=key.device)
    peak = peak.scatter_reduce(0, owner[:, None].expand_as(scores), scores, reduce="amax", include_self=True)
    weights = torch.exp(scores - peak.index_select(0, owner))  # the first token is always in its own window
    totals = torch.zeros_like(peak).index_add_(0, owner, weights)
    context = torch.zeros(sequences, *value.shape[1:], device=key.device).index_add_(
        0, owner, weights[..., None] * value.float()
    )
    return context / totals.clamp_min(torch.finfo(torch.float32).tiny)[..., None]


def mean_per_sequence(hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """The mean of each sequence's token vectors ``[sequences, hidden]``; an empty sequence gets zeros."""
    owner = sequence_owner(cu_seqlens, hidden.shape[0])
    sums = hidden.new_zeros(cu_seqlens.numel() - 1, hidden.shape[1]).index_add_(0, owner, hidden)
    counts = (cu_seqlens[1:] - cu_seqlens[:-1]).clamp_min(1).to(hidden.dtype)
    return sums / counts[:, None]


class FirstTokenHead(nn.Module):
    """The HF classification head of a post-LN family, applied to first-token vectors ``[sequences, hidden]``."""

    def __init__(self, hf_model: nn.Module, encoder: nn.Module, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bert-pooler":
            if getattr(encoder, "pooler", None) is None:
                raise ValueError("this BERT checkpoint has no pooler; the packed head needs pooler.dense")
            self.dense, self.classifier = encoder.pooler.dense, hf_model.classifier
        elif kind in ("roberta-head", "electra-head"):
            self.dense, self.classifier = hf_model.classifier.dense, hf_model.classifier.out_proj
            # RoBERTa's head applies tanh, ELECTRA's its own activation module (GELU)
            self.activation = torch.tanh if kind == "roberta-head" else hf_model.classifier.activation
        elif kind == "distilbert-head":
            self.dense, self.classifier = hf_model.pre_classifier, hf_model.classifier
        else:
            raise ValueError(f"unknown first-token head {kind!r}")

    def forward(self, first_tokens: torch.Tensor) -> torch.Tensor:
        if self.kind == "bert-pooler":
            return self.classifier(torch.tanh(self.dense(first_tokens)))
        if self.kind == "distilbert-head":
            return self.classifier(torch.relu(self.dense(first_tokens)))
        return self.classifier(self.activation(self.dense(first_tokens)))


class PackedEncoder(nn.Module):
    """Embeddings -> packed post-LN layers (the last for first tokens only) -> the family's head."""

    fused_tails = True  # layers call ops.dense_act / ops.dense_add_norm (Triton-fusable)
    has_local_layers = False

    def __init__(self, hf_model: nn.Module, architecture: Architecture, ops: PackedOps | None) -> None:
        super().__init__()
        config = hf_model.config
        encoder = getattr(hf_model, architecture.encoder_attribute)
        embeddings = encoder.embeddings
        self.word_embeddings = embeddings.word_embeddings
        self.position_embeddings = embeddings.position_embeddings
        self.token_type_embeddings = getattr(embeddings, "token_type_embeddings", None)  # DistilBERT has none
        self.embedding_norm = embeddings.LayerNorm
        # ELECTRA with embedding_size != hidden_size projects the embeddings up
        self.embeddings_project = getattr(encoder, "embeddings_project", None)
        if architecture.layout == "distilbert":
            hf_layers = encoder.transformer.layer
            activation, hidden_act = hf_layers[0].ffn.activation, config.activation
        else:
            hf_layers = encoder.encoder.layer
            activation, hidden_act = hf_layers[0].intermediate.intermediate_act_fn, config.hidden_act
        heads = config.num_attention_heads
        self.layers = nn.ModuleList(PackedLayer(layer, heads, architecture.layout) for layer in hf_layers)
        self.head = FirstTokenHead(hf_model, encoder, architecture.head)
        self.activation = activation
        self.hidden_act = hidden_act if isinstance(hidden_act, str) else None
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
        hidden = self.word_embeddings(input_ids)
        if self.token_type_embeddings is not None:
            hidden = hidden + self.token_type_embeddings(token_type_ids)
        hidden = self.embedding_norm(hidden + self.position_embeddings(position_ids))
        if self.embeddings_project is not None:
            hidden = self.embeddings_project(hidden)
        for layer in self.layers[:-1]:
            hidden = layer(hidden, varlen, self.ops)
        return self.head(self.layers[-1].forward_first_tokens(hidden, varlen, self.ops, first_index))


# ----------------------------------------------------------------------------- ModernBERT
def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` [tokens, heads, dim] with per-token ``cos``/``sin`` [tokens, dim], in fp32 as HF."""
    cos, sin, x32 = cos[:, None, :], sin[:, None, :], x.float()
    half = x.shape[-1] // 2
    rotated = torch.cat((-x32[..., half:], x32[..., :half]), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class PackedModernBertLayer(nn.Module):
    """One pre-norm ModernBERT layer on packed tokens: fused Wqkv, rotary q/k, global or windowed attention, GLU MLP."""

    def __init__(self, hf_layer: nn.Module, num_heads: int, window: int) -> None:
        super().__init__()
        attention = hf_layer.attn
        self.attn_norm = hf_layer.attn_norm  # Identity in layer 0
        self.wqkv = attention.Wqkv
        self.wo = attention.Wo
        self.mlp_norm = hf_layer.mlp_norm
        self.mlp = hf_layer.mlp  # Wi -> act(input) * gate -> Wo, HF's own forward
        self.num_heads = num_heads
        self.head_dim = attention.head_dim
        self.scale = self.head_dim**-0.5
        self.attention_type = hf_layer.attention_type
        # HF masks keys farther than config.sliding_window (= local_attention // 2) positions, inclusive
        self.window = window if self.attention_type == "sliding_attention" else None

    def _attention(self, ops: PackedOps):
        return ops.attention if self.window is None else ops.windowed_attention

    def forward(self, hidden: torch.Tensor, varlen: VarlenBatch, ops: PackedOps, rope) -> torch.Tensor:
        total_tokens = hidden.shape[0]
        qkv = self.wqkv(self.attn_norm(hidden)).view(total_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.unbind(1)
        cos, sin = rope
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        window = () if self.window is None else (self.window,)
        context = self._attention(ops).function(query, key, value, varlen, self.scale, *window)
        hidden = hidden + self.wo(context.reshape(total_tokens, -1))
        return hidden + self.mlp(self.mlp_norm(hidden))

    def forward_first_tokens(
        self, hidden: torch.Tensor, varlen: VarlenBatch, rope, first_index: torch.Tensor
    ) -> torch.Tensor:
        """The layer's output at each sequence's first token (keys/values from all tokens), as in PackedLayer."""
        total_tokens, width = hidden.shape[0], hidden.shape[1]
        weight, bias = self.wqkv.weight, self.wqkv.bias
        normed = self.attn_norm(hidden)
        key_value = F.linear(normed, weight[width:], None if bias is None else bias[width:])
        key, value = key_value.view(total_tokens, 2, self.num_heads, self.head_dim).unbind(1)
        first = normed.index_select(0, first_index)
        query = F.linear(first, weight[:width], None if bias is None else bias[:width])
        query = query.view(-1, self.num_heads, self.head_dim)
        cos, sin = rope
        key = apply_rotary(key, cos, sin)
        query = apply_rotary(query, cos.index_select(0, first_index), sin.index_select(0, first_index))
        context = first_token_attention(query, key, value, varlen.cu_seqlens, self.scale, self.window)
        residual = hidden.index_select(0, first_index)
        attended = residual + self.wo(context.to(hidden.dtype).reshape(len(first_index), -1))
        return attended + self.mlp(self.mlp_norm(attended))


class PackedModernBertEncoder(nn.Module):
    """tok_embeddings + norm -> packed pre-norm layers -> final_norm -> cls token or per-sequence mean -> head.

    With ``classifier_pooling="cls"`` the last layer runs for first tokens only; with ``"mean"``
    it runs for every token and the final-normed tokens are averaged per sequence. Token type
    ids are ignored (ModernBERT has none); position ids (0, 1, ... per sequence) index rotary
    tables computed once by HF's own rotary module.
    """

    fused_tails = False  # pre-norm GLU layers: no Triton bias+GELU / residual+LayerNorm tails apply

    def __init__(self, hf_model: nn.Module, architecture: Architecture, ops: PackedOps | None) -> None:
        super().__init__()
        config = hf_model.config
        backbone = getattr(hf_model, architecture.encoder_attribute)
        self.tok_embeddings = backbone.embeddings.tok_embeddings
        self.embedding_norm = backbone.embeddings.norm
        window = int(config.sliding_window)
        self.layers = nn.ModuleList(
            PackedModernBertLayer(layer, config.num_attention_heads, window) for layer in backbone.layers
        )
        self.final_norm = backbone.final_norm
        self.head = hf_model.head  # dense -> act -> norm
        self.classifier = hf_model.classifier
        self.pooling = config.classifier_pooling
        self.has_local_layers = any(layer.window is not None for layer in self.layers)
        self.window = window  # half-width of the local layers' band
        self.activation = self.layers[0].mlp.act
        self.hidden_act = None
        self.position_style = architecture.position_style
        self.layer_types = sorted({layer.attention_type for layer in self.layers})
        for layer_type in self.layer_types:
            cos, sin = _rotary_tables(backbone.rotary_emb, config.max_position_embeddings, layer_type)
            self.register_buffer(f"{layer_type}_cos", cos, persistent=False)
            self.register_buffer(f"{layer_type}_sin", sin, persistent=False)
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
        """Logits ``[sequences, num_labels]``; same inputs as :meth:`PackedEncoder.forward` (token types unused)."""
        del token_type_ids  # ModernBERT has no token type embeddings
        hidden = self.embedding_norm(self.tok_embeddings(input_ids))
        rope = {
            layer_type: (
                getattr(self, f"{layer_type}_cos").index_select(0, position_ids),
                getattr(self, f"{layer_type}_sin").index_select(0, position_ids),
            )
            for layer_type in self.layer_types
        }
        last = self.layers[-1]
        for layer in self.layers[:-1]:
            hidden = layer(hidden, varlen, self.ops, rope[layer.attention_type])
        if self.pooling == "cls":
            pooled = self.final_norm(last.forward_first_tokens(hidden, varlen, rope[last.attention_type], first_index))
        else:
            hidden = self.final_norm(last(hidden, varlen, self.ops, rope[last.attention_type]))
            pooled = mean_per_sequence(hidden, varlen.cu_seqlens)
        return self.classifier(self.head(pooled))


def _rotary_tables(rotary: nn.Module, positions: int, layer_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``/``sin`` ``[positions, head_dim]`` in fp32 from HF's rotary module (what it computes per forward)."""
    probe = torch.zeros(1, dtype=torch.float32, device=next(iter(rotary.buffers())).device)
    position_ids = torch.arange(positions, device=probe.device)[None, :]
    with torch.no_grad():
        cos, sin = rotary(probe, position_ids, layer_type)
    return cos[0].float(), sin[0].float()


def build_packed_encoder(hf_model: nn.Module) -> PackedEncoder | PackedModernBertEncoder:
    """Wrap a supported ``*ForSequenceClassification`` ``hf_model`` (see :data:`ARCHITECTURES`) as a packed encoder.

    It starts with pure-torch ops and CPU attention; assign ``encoder.ops`` to change kernels.
    """
    architecture = architecture_for(hf_model.config)
    if architecture.layout == "modernbert":
        encoder = PackedModernBertEncoder(hf_model, architecture, None).eval()
    else:
        encoder = PackedEncoder(hf_model, architecture, None).eval()
    windowed = select_windowed_attention(torch.device("cpu")) if encoder.has_local_layers else None
    encoder.ops = torch_ops(ATTENTION[CPU_DEFAULT], encoder.activation, windowed)
    return encoder
