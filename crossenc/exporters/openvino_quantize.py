"""int8 quantization of an OpenVINO model through NNCF, calibrated on real (query, document) pairs.

Calibration pairs are tokenized exactly as crossenc tokenizes at run time, from the user's JSONL
file or the Debian workload's training queries (never the held-out ones used for verification and
benchmarks). Which MatMuls stay in float, and why: docs/int8-recipes.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from crossenc.batching import collate
from crossenc.model_source import ModelSource
from crossenc.optional import require
from crossenc.tokenization import tokenizer_setup
from crossenc.workloads import calibration_queries, sample_pairs

if TYPE_CHECKING:
    from crossenc.exporters.openvino import OpenVINOExportConfig

DEFAULT_SUBSET_SIZE = 300  # calibration pairs (one pair per NNCF sample: no padding in the statistics)
# MatMul groups that int8 may leave in float, found from the graph's structure (any encoder, and
# pre-norm decoders such as Qwen3 whose norms are RMSNorms):
# head = after the last LayerNorm / RMSNorm (pooler, classifier); ffn_output = fed by the FFN
# activation, or by a gated FFN's activation x up product (its outliers hurt most);
# attention_output = fed by the attention result; attention = the
# activation x activation products (ScaledDotProductAttention ops, and the explicit q.k / p.v
# MatMuls of a first-token last layer): int8 queries and keys move scores and gain little speed;
# last_layer = every MatMul of the last encoder layer (cheap in a first-token graph).
FLOAT_SCOPES = ("head", "ffn_output", "attention_output", "attention", "last_layer")
DEFAULT_KEEP_FLOAT = ("head", "ffn_output", "attention", "last_layer")  # docs/int8-recipes.md
ACTIVATION_TYPES = frozenset({"Gelu", "Swish", "Relu", "HSwish", "Mish"})
PASS_THROUGH_TYPES = frozenset({"Reshape", "Transpose", "Convert", "Squeeze", "Unsqueeze"})


def calibration_pairs(config: "OpenVINOExportConfig") -> tuple[list[tuple[str, str]], str]:
    """``subset_size`` (query, document) pairs sampled from the calibration file or Debian training queries."""
    queries, origin = calibration_queries(config.calibration_file)
    pairs = sample_pairs(queries, config.subset_size, config.seed)
    if not pairs:
        raise ValueError(f"calibration set {origin} has no (query, document) pairs")
    return pairs, origin


def calibration_inputs(
    source: ModelSource, pairs: list[tuple[str, str]], names: list[str]
) -> list[dict[str, np.ndarray]]:
    """One model input per pair, tokenized exactly as CrossEncoder does (its tokenizer setup + collate)."""
    setup = tokenizer_setup(source)
    encoded = setup.encode(pairs)
    items = []
    for index in range(len(pairs)):
        batch = collate(encoded, np.array([index]), setup.pad_token_id)
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                  "token_type_ids": batch.token_type_ids}
        items.append({name: arrays[name] for name in names})
    return items


def _producer(op, index: int = 0, passes: frozenset[str] = PASS_THROUGH_TYPES):
    """The node feeding ``op``'s input ``index``, looking through reshapes and transposes."""
    node = op.input_value(index).get_node()
    while node.get_type_name() in passes:
        node = node.input_value(0).get_node()
    return node


def is_layer_norm(op) -> bool:
    """A norm on the residual stream: LayerNorm (MVN) or RMSNorm (ReduceMean of a square, as Qwen3/Llama
    convert). A norm fed straight by a projection (Qwen3's per-head q/k norms) or by an activation (a
    head's dense -> act -> norm, as ModernBERT's) is no layer boundary."""
    kind = op.get_type_name()
    if kind == "ReduceMean":
        square = _producer(op)
        squared = square.get_type_name() == "Power" or (
            square.get_type_name() == "Multiply" and square.input_value(0) == square.input_value(1)
        )
        if not squared:
            return False
        op = square
    elif kind != "MVN":
        return False
    return _producer(op).get_type_name() not in ("MatMul", *ACTIVATION_TYPES)


def _fed_by_activation(op) -> bool:
    """``op``'s input 0 is an FFN activation, or a gated FFN's activation x up-projection product (SwiGLU, GeGLU)."""
    producer = _producer(op)
    if producer.get_type_name() in ACTIVATION_TYPES:
        return True
    return producer.get_type_name() == "Multiply" and any(
        _producer(producer, index).get_type_name() in ACTIVATION_TYPES for index in range(2)
    )


def float_scope_nodes(ov_model, scopes: tuple[str, ...]) -> list[str]:
    """Friendly names of the MatMuls (and attention ops) in ``scopes`` (see FLOAT_SCOPES)."""
    ops = list(ov_model.get_ordered_ops())
    norms = [i for i, op in enumerate(ops) if is_layer_norm(op)] or [len(ops)]
    last_norm = norms[-1]
    # post-norm: the previous layer's output LayerNorm; pre-norm: the last layer's input norm
    last_layer_start = norms[-3] if len(norms) >= 3 else -1
    chosen = []
    for position, op in enumerate(ops):
        if op.get_type_name() != "MatMul":
            continue
        producer = _producer(op).get_type_name()
        weighted = _producer(op, 1).get_type_name() == "Constant"
        if (
            ("head" in scopes and position > last_norm)
            or ("ffn_output" in scopes and _fed_by_activation(op))
            or ("attention_output" in scopes and producer in ("ScaledDotProductAttention", "MatMul"))
            or ("attention" in scopes and not weighted)
            or ("last_layer" in scopes and last_layer_start < position < last_norm)
        ):
            chosen.append(op.get_friendly_name())
    if "attention" in scopes:
        chosen += [op.get_friendly_name() for op in ops if op.get_type_name() == "ScaledDotProductAttention"]
    return chosen


def quantize_int8(
    ov_model, items: list[dict[str, np.ndarray]], config: "OpenVINOExportConfig"
) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training int8 (MIXED preset, transformer model type) calibrated on ``items``."""
    nncf = require("nncf", "openvino", "OpenVINO int8 quantization")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    ignored_names = float_scope_nodes(ov_model, config.keep_float)
    kwargs: dict[str, Any] = {}
    if ignored_names or config.ignored_patterns:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored_names, patterns=list(config.ignored_patterns))
    if config.smooth_quant_alpha is not None:
        alphas = AdvancedSmoothQuantParameters(matmul=config.smooth_quant_alpha)
        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(smooth_quant_alphas=alphas)
    quantized = nncf.quantize(
        ov_model,
        nncf.Dataset(items),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(items),
        fast_bias_correction=config.fast_bias_correction,
        **kwargs,
    )
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    return quantized, {"ignored_nodes": ignored_names, "fake_quantize_nodes": fake_quantize}


def quantize_ir(
    source: ModelSource, ov_model, input_names: list[str], config: "OpenVINOExportConfig"
) -> tuple[Any, dict[str, Any]]:
    """``ov_model`` in int8, calibrated on ``config``'s pairs; returns (model, what was done, for the manifest)."""
    pairs, origin = calibration_pairs(config)
    items = calibration_inputs(source, pairs, input_names)
    quantized, details = quantize_int8(ov_model, items, config)
    if details["fake_quantize_nodes"] == 0:  # an "int8" IR without one quantized op would be the fp32 graph
        family = getattr(source.load_config(), "model_type", None) or source.name
        raise ValueError(
            f"OpenVINO int8 export of this '{family}' checkpoint refused: NNCF quantized none of its ops "
            f"(keep_float={list(config.keep_float)}, {len(details['ignored_nodes'])} nodes kept in float, ignored "
            f"patterns {list(config.ignored_patterns)}), so the IR would be fp32 and no int8 IR is written. Use "
            "variant='bf16' (or 'fp32') instead, or export with fewer --keep-float scopes / --ignore patterns"
        )
    return quantized, {"tool": "nncf.quantize", "calibration": origin, "pairs": len(items), **details}
