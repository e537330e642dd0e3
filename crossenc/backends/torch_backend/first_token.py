"""Export graphs that run the last encoder layer for the first token only.

A sequence-classification head reads one position of the last layer: [CLS] (BERT's pooler) or
``<s>`` (RoBERTa/XLM-R's classification head). In that layer every token still supplies keys
and values, but the query, attention output, residual + LayerNorm and the whole FFN are needed
for the first token alone. Computing just that skips ~10/12 of the last layer's matrix work
(MiniLM-L6: ~14 % of the model's GEMM FLOPs) and changes no score beyond float rounding.

:func:`first_token_model` wraps a Hugging Face BERT / RoBERTa / XLM-R
``*ForSequenceClassification`` model; the wrapper takes the same inputs and returns
``{"logits": ...}``. The first ``L - 1`` layers stay Hugging Face's own modules, so ONNX
Runtime's fusions (Attention, SkipLayerNorm, BiasGelu, EmbedLayerNorm) still match them.
"""

from __future__ import annotations

import copy
import math

import torch

SUPPORTED_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta"})


def supports_first_token(model: torch.nn.Module) -> bool:
    """True for the architectures whose layout :class:`FirstTokenLastLayer` knows."""
    config = getattr(model, "config", None)
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    return (
        getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES
        and not getattr(config, "is_decoder", False)
        and isinstance(layers, torch.nn.ModuleList)
        and len(layers) >= 1
        and hasattr(model, "classifier")
    )


def first_token_layer(
    layer: torch.nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Output ``[batch, 1, hidden]`` of one BERT-style ``layer`` at position 0, attending over the unmasked positions."""
    attention = layer.attention.self
    batch, length, _ = hidden.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size
    first = hidden[:, :1]
    query = attention.query(first).view(batch, 1, heads, size).transpose(1, 2)
    key = attention.key(hidden).view(batch, length, heads, size).transpose(1, 2)
    value = attention.value(hidden).view(batch, length, heads, size).transpose(1, 2)
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(size)  # [batch, heads, 1, length]
    if attention_mask is not None:
        scores = scores + (1.0 - attention_mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
    probabilities = torch.softmax(scores, dim=-1)
    context = torch.matmul(probabilities, value).transpose(1, 2).reshape(batch, 1, heads * size)
    attended = layer.attention.output(context, first)
    return layer.output(layer.intermediate(attended), attended)


class FirstTokenLastLayer(torch.nn.Module):
    """``model`` with its last encoder layer computed for position 0 only; returns ``{"logits"}``.

    Shares ``model``'s modules and weights but leaves ``model`` itself whole: it stays the complete
    Hugging Face model (``CrossEncoder.model``), and an edit to its weights reaches this wrapper too.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        if not supports_first_token(model):
            raise ValueError(
                f"first-token export supports {sorted(SUPPORTED_MODEL_TYPES)} sequence classifiers, "
                f"not {getattr(getattr(model, 'config', None), 'model_type', type(model).__name__)!r}"
            )
        base = getattr(model, model.base_model_prefix)
        self.last_layer = base.encoder.layer[-1]
        self.pooler = getattr(base, "pooler", None)
        self.base = _without_last_layer(base)
        self.dropout = getattr(model, "dropout", None) or torch.nn.Identity()
        self.classifier = model.classifier
        self.config = model.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        first = first_token_layer(self.last_layer, hidden, attention_mask)
        if self.pooler is not None:  # BERT: pooler(dense + tanh of [CLS]) -> dropout -> classifier
            logits = self.classifier(self.dropout(self.pooler(first)))
        else:  # RoBERTa / XLM-R: the classification head reads features[:, 0, :]
            logits = self.classifier(first)
        return {"logits": logits}


def _shallow_module_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A new module object over the same parameters, with its own child table to edit."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)  # copy.copy would share the child dict with ``module``
    return clone


def _without_last_layer(base: torch.nn.Module) -> torch.nn.Module:
    """``base`` (BertModel, RobertaModel, ...) without its last encoder layer and pooler, weights shared."""
    encoder = _shallow_module_copy(base.encoder)
    encoder.layer = torch.nn.ModuleList(list(base.encoder.layer)[:-1])
    truncated = _shallow_module_copy(base)
    truncated.encoder = encoder
    if "pooler" in truncated._modules:
        truncated.pooler = None  # the truncated stack's pooled output would be wrong; pooled in forward instead
    return truncated


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


def export_model(model: torch.nn.Module, first_token: bool) -> torch.nn.Module:
    """The module a graph exporter traces: the first-token rewrite where it applies, else logits only."""
    if first_token and supports_first_token(model):
        return FirstTokenLastLayer(model).eval()
    return LogitsOnly(model).eval()


def last_layer_note(model: torch.nn.Module) -> str:
    """What an exported graph's last layer computes, for the manifest."""
    return "first token only" if isinstance(model, FirstTokenLastLayer) else "all tokens"  # LogitsOnly too
