"""Export graphs that run the last encoder layer for the first token only.

A sequence-classification head reads one position of the last layer: [CLS] (BERT's pooler,
ALBERT's pooler, DistilBERT's pre-classifier, DeBERTa's ContextPooler, ModernBERT's "cls" pooling)
or ``<s>`` (the RoBERTa / XLM-R / ELECTRA / MPNet classification heads). In that layer every token
still supplies keys and values, but the query, attention output, residual + LayerNorm and the
whole FFN are needed for the first token alone. Computing just that skips ~10/12 of the last
layer's matrix work (MiniLM-L6: ~14 % of the model's GEMM FLOPs) and changes no score beyond float
rounding.

:func:`first_token_model` wraps a Hugging Face ``*ForSequenceClassification`` model of a family in
:data:`SUPPORTED_MODEL_TYPES`; the wrapper takes the same inputs and returns ``{"logits": ...}``.
It runs the model's own forward on a shallow copy whose last layer (ALBERT: whose layer loop) is
swapped for a first-token module, so embeddings, attention masks (padding, ModernBERT's sliding
window), relative position biases, rotary tables, final norms and heads stay Hugging Face's code,
and the first ``L - 1`` layers stay Hugging Face's modules: ONNX Runtime's fusions (Attention,
SkipLayerNorm, BiasGelu, EmbedLayerNorm) still match them. :func:`first_token_unsupported` says
why a model keeps the full last layer (mean pooling, decoders, ...).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

# The graphs export_model builds (and how int8 scopes read them); exporters record it, so caches rebuild
# exports made by older code (2: first token for every encoder family, ModernBERT masks without fully
# masked rows; 3: a head's own norm is no layer boundary for OpenVINO's keep-float scopes)
GRAPH_REVISION = 3
BERT_LIKE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
SUPPORTED_MODEL_TYPES = BERT_LIKE | {"distilbert", "albert", "mpnet", "deberta-v2", "modernbert"}
# The 4D masks (float for eager, bool for sdpa) whose row 0 the first-token attention takes; flash and flex
# attention get their padding and window elsewhere (a 2D mask, kernel arguments, a BlockMask)
SLICEABLE_ATTENTION = ("eager", "sdpa")


# --------------------------------------------------------------------------- gate


def first_token_unsupported(model: torch.nn.Module) -> str | None:
    """Why :class:`FirstTokenLastLayer` cannot rewrite ``model`` exactly, or None when it can."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        if isinstance(getattr(model, "score", None), torch.nn.Linear):  # transformers' decoder classifiers
            return f"{model_type}: a decoder pools the last real token, not the first"
        return f"no first-token rewrite for model_type {model_type!r}"
    if not type(model).__name__.endswith("ForSequenceClassification"):
        return f"{type(model).__name__} is not a sequence classifier"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return f"{model_type} configured as a decoder"
    attention = getattr(config, "_attn_implementation", None) or "eager"
    if attention not in SLICEABLE_ATTENTION:
        return f"{attention} attention: the first-token layer reads eager or sdpa masks"
    if _layers_owner(model, model_type) is None:
        return f"not a {model_type} sequence classifier with the expected layout"
    if model_type == "modernbert" and getattr(config, "classifier_pooling", "cls") != "cls":
        return f"{config.classifier_pooling} pooling reads every token"
    if model_type == "deberta-v2" and getattr(config, "conv_kernel_size", 0) > 0 and config.num_hidden_layers == 1:
        return "the convolution after layer 0 mixes every token into the last layer's output"
    return None


def supports_first_token(model: torch.nn.Module) -> bool:
    """True where :class:`FirstTokenLastLayer` applies exactly (see :func:`first_token_unsupported`)."""
    return first_token_unsupported(model) is None


def _layers_owner(model: torch.nn.Module, model_type: str) -> tuple[str, ...] | None:
    """Attribute path from ``model`` to the module whose child is swapped, if the layout is there."""
    base_name = getattr(model, "base_model_prefix", "")
    base = getattr(model, base_name, None)
    if base is None:
        return None
    if model_type == "albert":
        path, expected = (base_name, "encoder"), "albert_layer_groups"
    elif model_type == "distilbert":
        path, expected = (base_name, "transformer", "layer"), None
    elif model_type == "modernbert":
        path, expected = (base_name, "layers"), None
    else:
        path, expected = (base_name, "encoder", "layer"), None
    module: torch.nn.Module | None = model
    for name in path:
        module = module._modules.get(name) if module is not None else None
    if module is None:
        return None
    if expected is not None:
        return path if isinstance(getattr(module, expected, None), torch.nn.ModuleList) else None
    return path if isinstance(module, torch.nn.ModuleList) and len(module) >= 1 else None


# --------------------------------------------------------------------------- attention at position 0


def first_query_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Row 0 of the 4D mask a layer receives, ``[batch, 1|heads, 1, keys]``: bool (sdpa) where True
    attends, float (eager) added to the scores; None (sdpa without padding) stays None. Padding and
    ModernBERT's sliding window are both in it."""
    return None if mask is None else mask[:, :, :1, :]


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
           scaling: float, bias: torch.Tensor | None = None, float_softmax: bool = False) -> torch.Tensor:
    """``[batch, heads, 1, head]`` attention of one query over all keys; ``mask`` from :func:`first_query_mask`."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask.to(scores.dtype)
    if float_softmax:  # ModernBERT's eager attention takes the softmax in fp32
        probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    else:
        probabilities = torch.softmax(scores, dim=-1)
    return torch.matmul(probabilities, value)


def _heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """``[batch, length, heads * size]`` -> ``[batch, heads, length, size]``."""
    batch, length, _ = states.shape
    return states.view(batch, length, heads, -1).transpose(1, 2)


def _merge(context: torch.Tensor) -> torch.Tensor:
    """``[batch, heads, 1, size]`` -> ``[batch, 1, heads * size]``."""
    batch, heads, length, size = context.shape
    return context.transpose(1, 2).reshape(batch, length, heads * size)


class _FirstTokenLayer(torch.nn.Module):
    """Holds the Hugging Face layer's children under their own names, so weights and graph node
    names (``.../layer.N/attention/...``) are the original layer's, and its plain attributes, which
    the encoder loop may read (ModernBERT's ``attention_type``)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        for name, child in layer.named_children():
            self.add_module(name, child)
        for name, value in vars(layer).items():
            if not name.startswith("_"):
                setattr(self, name, value)


class BertFirstTokenLayer(_FirstTokenLayer):
    """BertLayer (RoBERTa, XLM-R, CamemBERT, ELECTRA alike) at position 0; returns ``[batch, 1, hidden]``."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args, **kwargs) -> torch.Tensor:
        attention = self.attention.self
        heads = attention.num_attention_heads
        first = hidden_states[:, :1]
        context = attend(_heads(attention.query(first), heads), _heads(attention.key(hidden_states), heads),
                         _heads(attention.value(hidden_states), heads), first_query_mask(attention_mask),
                         attention.scaling)
        attended = self.attention.output(_merge(context), first)
        return self.output(self.intermediate(attended), attended)


class DistilBertFirstTokenLayer(_FirstTokenLayer):
    """DistilBERT's TransformerBlock at position 0."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs) -> torch.Tensor:
        attention = self.attention
        first = hidden_states[:, :1]
        context = attend(_heads(attention.q_lin(first), attention.n_heads),
                         _heads(attention.k_lin(hidden_states), attention.n_heads),
                         _heads(attention.v_lin(hidden_states), attention.n_heads),
                         first_query_mask(attention_mask), attention.scaling)
        attended = self.sa_layer_norm(attention.out_lin(_merge(context)) + first)
        return self.output_layer_norm(self.ffn(attended) + attended)


class MPNetFirstTokenLayer(_FirstTokenLayer):
    """MPNetLayer at position 0, with row 0 of the encoder's relative position bias; returns a 1-tuple
    as MPNetEncoder expects."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None, output_attentions: bool = False,
                **kwargs) -> tuple[torch.Tensor]:
        attention = self.attention.attn
        heads, size = attention.num_attention_heads, attention.attention_head_size
        first = hidden_states[:, :1]
        bias = position_bias[:, :, :1] if position_bias is not None else None
        context = attend(_heads(attention.q(first), heads), _heads(attention.k(hidden_states), heads),
                         _heads(attention.v(hidden_states), heads), first_query_mask(attention_mask),
                         1.0 / math.sqrt(size), bias=bias)
        attended = self.attention.LayerNorm(self.attention.dropout(attention.o(_merge(context))) + first)
        return (self.output(self.intermediate(attended), attended),)


def albert_first_token_layer(layer: torch.nn.Module, hidden_states: torch.Tensor,
                             attention_mask: torch.Tensor | None) -> torch.Tensor:
    """One AlbertLayer at position 0."""
    attention = layer.attention
    heads = attention.num_attention_heads
    first = hidden_states[:, :1]
    context = attend(_heads(attention.query(first), heads), _heads(attention.key(hidden_states), heads),
                     _heads(attention.value(hidden_states), heads), first_query_mask(attention_mask),
                     attention.scaling)
    attended = attention.LayerNorm(first + attention.output_dropout(attention.dense(_merge(context))))
    return layer.full_layer_layer_norm(layer.ff_chunk(attended) + attended)


class AlbertFirstTokenTransformer(_FirstTokenLayer):
    """AlbertTransformer whose shared layer groups run their ``num_hidden_layers`` iterations as Hugging
    Face does, except the last iteration's last AlbertLayer, which runs at position 0."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        hidden_states = self.embedding_hidden_mapping_in(hidden_states)
        layers, groups = self.config.num_hidden_layers, self.config.num_hidden_groups
        for i in range(layers):
            group = self.albert_layer_groups[int(i / (layers / groups))]  # Hugging Face's group index
            if i < layers - 1:
                hidden_states = group(hidden_states, attention_mask, **kwargs)
                continue
            for albert_layer in group.albert_layers[:-1]:
                hidden_states = albert_layer(hidden_states, attention_mask, **kwargs)
            hidden_states = albert_first_token_layer(group.albert_layers[-1], hidden_states, attention_mask)
        return BaseModelOutput(last_hidden_state=hidden_states)


class DebertaV2FirstTokenLayer(_FirstTokenLayer):
    """DebertaV2Layer at position 0: content->position from row 0 of the relative positions,
    position->content from column 0 (all keys), as DisentangledSelfAttention computes them.

    Hugging Face's own ``query_states`` argument cannot do this: with one query its p2c term
    broadcasts to ``[keys, keys]`` and is rebuilt with the bucket arguments swapped."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, query_states=None,
                relative_pos: torch.Tensor | None = None, rel_embeddings: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, None]:
        from transformers.models.deberta_v2.modeling_deberta_v2 import scaled_size_sqrt

        attention = self.attention.self
        heads = attention.num_attention_heads
        first = hidden_states[:, :1]
        query = attention.transpose_for_scores(attention.query_proj(first), heads)  # [batch*heads, 1, size]
        key = attention.transpose_for_scores(attention.key_proj(hidden_states), heads)
        value = attention.transpose_for_scores(attention.value_proj(hidden_states), heads)
        scale_factor = 1 + ("c2p" in attention.pos_att_type) + ("p2c" in attention.pos_att_type)
        scale = scaled_size_sqrt(query, scale_factor)
        scores = torch.bmm(query, key.transpose(-1, -2) / scale.to(dtype=query.dtype))
        if attention.relative_attention:  # DebertaV2Encoder passes relative_pos whenever it is on
            scores = scores + _deberta_first_row_bias(attention, query, key, relative_pos,
                                                      attention.pos_dropout(rel_embeddings), scale_factor)
        scores = scores.view(-1, heads, 1, scores.size(-1))
        mask = attention_mask[:, :, :1, :].bool()  # DebertaV2Encoder.get_attention_mask: [batch, 1, L, L], 1 attends
        scores = scores.masked_fill(~mask, torch.finfo(query.dtype).min)
        probabilities = torch.softmax(scores, dim=-1)
        context = torch.bmm(probabilities.view(-1, 1, probabilities.size(-1)), value)
        context = context.view(-1, heads, 1, context.size(-1)).permute(0, 2, 1, 3).reshape(first.shape[0], 1, -1)
        attended = self.attention.output(context, first)
        return self.output(self.intermediate(attended), attended), None


def _deberta_first_row_bias(attention, query, key, relative_pos, rel_embeddings, scale_factor) -> torch.Tensor:
    """Row 0 of DisentangledSelfAttention.disentangled_attention_bias: ``[batch*heads, 1, keys]``."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import scaled_size_sqrt

    if relative_pos.dim() == 2:
        relative_pos = relative_pos.unsqueeze(0).unsqueeze(0)
    elif relative_pos.dim() == 3:
        relative_pos = relative_pos.unsqueeze(1)
    relative_pos = relative_pos.to(device=query.device, dtype=torch.long)  # [1|batch, 1, queries, keys]
    span = attention.pos_ebd_size
    heads = attention.num_attention_heads
    rel_embeddings = rel_embeddings[0 : span * 2, :].unsqueeze(0)
    repeats = query.size(0) // heads
    if attention.share_att_key:
        pos_query = attention.transpose_for_scores(attention.query_proj(rel_embeddings), heads).repeat(repeats, 1, 1)
        pos_key = attention.transpose_for_scores(attention.key_proj(rel_embeddings), heads).repeat(repeats, 1, 1)
    else:
        if "c2p" in attention.pos_att_type:
            pos_key = attention.transpose_for_scores(attention.pos_key_proj(rel_embeddings), heads)
            pos_key = pos_key.repeat(repeats, 1, 1)
        if "p2c" in attention.pos_att_type:
            pos_query = attention.transpose_for_scores(attention.pos_query_proj(rel_embeddings), heads)
            pos_query = pos_query.repeat(repeats, 1, 1)
    keys = key.size(-2)
    score = 0
    if "c2p" in attention.pos_att_type:  # query 0's content against the positions of each key
        scale = scaled_size_sqrt(pos_key, scale_factor)
        c2p = torch.bmm(query, pos_key.transpose(-1, -2))
        index = torch.clamp(relative_pos[:, :, :1, :] + span, 0, span * 2 - 1)
        c2p = torch.gather(c2p, dim=-1, index=index.squeeze(0).expand([query.size(0), 1, keys]))
        score = score + c2p / scale.to(dtype=c2p.dtype)
    if "p2c" in attention.pos_att_type:  # each key's content against its position relative to query 0
        scale = scaled_size_sqrt(pos_query, scale_factor)
        index = torch.clamp(-relative_pos[:, :, :, :1] + span, 0, span * 2 - 1)
        p2c = torch.bmm(key, pos_query.transpose(-1, -2))
        p2c = torch.gather(p2c, dim=-1, index=index.squeeze(0).expand([query.size(0), keys, 1])).transpose(-1, -2)
        score = score + p2c / scale.to(dtype=p2c.dtype)
    return score


def _rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """ModernBERT's apply_rotary_pos_emb for one tensor (computed in fp32, cast back)."""
    x = states.float()
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)).to(states.dtype)


class ModernBertFirstTokenLayer(_FirstTokenLayer):
    """ModernBertEncoderLayer (pre-norm, rotary) at position 0; the mask it receives carries the sliding
    window of a local layer. Wqkv runs for all tokens (keys and values need it; one fused Linear keeps
    quantized weights working), Wo and the MLP for position 0 alone."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None, **kwargs) -> torch.Tensor:
        attention = self.attn
        batch, length, _ = hidden_states.shape
        first = hidden_states[:, :1]
        qkv = attention.Wqkv(self.attn_norm(hidden_states)).view(batch, length, 3, -1, attention.head_dim)
        query = qkv[:, :1, 0].transpose(1, 2)
        key, value = qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        cos, sin = position_embeddings
        query, key = _rotate(query, cos[:, :1], sin[:, :1]), _rotate(key, cos, sin)
        context = attend(query, key, value, first_query_mask(attention_mask), attention.head_dim ** -0.5,
                         float_softmax=True)
        hidden = first + attention.out_drop(attention.Wo(_merge(context)))
        return hidden + self.mlp(self.mlp_norm(hidden))


LAYER_CLASSES: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    **{model_type: BertFirstTokenLayer for model_type in BERT_LIKE},
    "distilbert": DistilBertFirstTokenLayer,
    "mpnet": MPNetFirstTokenLayer,
    "deberta-v2": DebertaV2FirstTokenLayer,
    "modernbert": ModernBertFirstTokenLayer,
    "albert": AlbertFirstTokenTransformer,  # replaces the whole layer loop (layers are shared)
}


# --------------------------------------------------------------------------- the wrapper


class FirstTokenLastLayer(torch.nn.Module):
    """``model`` with its last encoder layer computed for position 0 only; returns ``{"logits"}``.

    Shares ``model``'s modules and weights but leaves ``model`` itself whole: it stays the complete
    Hugging Face model (``CrossEncoder.model``), and an edit to its weights reaches this wrapper too.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        reason = first_token_unsupported(model)
        if reason is not None:
            raise ValueError(f"first-token export supports {sorted(SUPPORTED_MODEL_TYPES)} sequence classifiers "
                             f"with the first token pooled; not this one: {reason}")
        model_type = model.config.model_type
        path = _layers_owner(model, model_type)
        if model_type == "albert":
            self.model = _swapped(model, path, AlbertFirstTokenTransformer)
        else:
            last = str(len(_module_at(model, path)) - 1)
            self.model = _swapped(model, (*path, last), LAYER_CLASSES[model_type])
        self.config = model.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return {"logits": self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits}


def _module_at(module: torch.nn.Module, path: tuple[str, ...]) -> torch.nn.Module:
    for name in path:
        module = module._modules[name]
    return module


def _shallow_module_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A new module object over the same parameters, with its own child table to edit."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)  # copy.copy would share the child dict with ``module``
    return clone


def _swapped(module: torch.nn.Module, path: tuple[str, ...], build: Callable) -> torch.nn.Module:
    """Shallow copies of ``module`` and its descendants along ``path``, the one at its end replaced by
    ``build(original)``; weights shared, ``module`` untouched."""
    clone = _shallow_module_copy(module)
    name, rest = path[0], path[1:]
    child = module._modules[name]
    clone._modules[name] = _swapped(child, rest, build) if rest else build(child)
    return clone


class LogitsOnly(torch.nn.Module):
    """``model``'s logits alone, with no key/value cache: graph exporters trace tensors, not Cache objects
    (decoders such as Qwen3 return one by default)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.is_decoder = bool(getattr(model.config, "use_cache", False))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if self.is_decoder:
            kwargs["use_cache"] = False
        return {"logits": self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits}


def first_token_model(model: torch.nn.Module) -> torch.nn.Module:
    """The wrapper when the architecture is supported, else ``model`` unchanged."""
    return FirstTokenLastLayer(model).eval() if supports_first_token(model) else model


def unmask_unattended(mask: torch.Tensor | None) -> torch.Tensor | None:
    """``mask`` with every fully masked query row opened to all keys (as transformers' ``_unmask_unattended``).

    Such rows are padding queries only; their outputs are never read, but an all ``-inf`` softmax row is
    NaN in OpenVINO, and 0 x NaN then reaches real tokens through the next layer's values.
    """
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return mask | ~mask.any(dim=-1, keepdim=True)
    unattended = (mask <= torch.finfo(mask.dtype).min).all(dim=-1, keepdim=True)
    return mask.masked_fill(unattended, 0.0)


class ModernBertUnmaskedRowsLayer(_FirstTokenLayer):
    """A ModernBertEncoderLayer run by its own forward with :func:`unmask_unattended` masks: a padding query
    farther than the sliding window from every real token has no key to attend to."""

    gradient_checkpointing = False  # a class attribute of transformers' layers, which their code reads

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None, **kwargs) -> torch.Tensor:
        from transformers.models.modernbert.modeling_modernbert import ModernBertEncoderLayer

        return ModernBertEncoderLayer.forward(self, hidden_states, attention_mask=unmask_unattended(attention_mask),
                                              position_embeddings=position_embeddings, **kwargs)


def _graph_safe_masks(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (shared weights) with ModernBERT's layers run on :func:`unmask_unattended` masks; others as they are."""
    if getattr(getattr(model, "config", None), "model_type", None) != "modernbert":
        return model
    path = _layers_owner(model, "modernbert")
    if path is None:
        return model
    for index in range(len(_module_at(model, path))):
        model = _swapped(model, (*path, str(index)), ModernBertUnmaskedRowsLayer)
    return model


def export_model(model: torch.nn.Module, first_token: bool) -> torch.nn.Module:
    """The module a graph exporter traces: the first-token rewrite where it applies, else logits only; masks
    without fully masked rows (:func:`_graph_safe_masks`)."""
    safe = _graph_safe_masks(model)
    if first_token and supports_first_token(model):
        return FirstTokenLastLayer(safe).eval()
    return LogitsOnly(safe).eval()


def last_layer_note(module: torch.nn.Module) -> str:
    """What ``module``'s last layer computes (``info()`` details, export manifests): "first token only",
    "all tokens" where the rewrite was turned off, or "all tokens (why it does not apply)"."""
    if isinstance(module, FirstTokenLastLayer):
        return "first token only"
    model = module.model if isinstance(module, LogitsOnly) else module
    reason = first_token_unsupported(model)
    return f"all tokens ({reason})" if reason else "all tokens"
