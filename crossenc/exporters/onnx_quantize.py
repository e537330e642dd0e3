"""int8 quantization of an exported ONNX graph: dynamic, or static calibrated on real (query, document) pairs.

Calibration pairs are tokenized exactly as crossenc tokenizes at run time (its tokenizer setup +
collate, length-sorted batches), from the user's JSONL file or the Debian workload's training
queries (``queries[:FIT_QUERIES]``; never the held-out ones used for verification and benchmarks).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossenc.batching import collate, plan_batches
from crossenc.model_source import ModelSource
from crossenc.optional import require
from crossenc.tokenization import tokenizer_setup
from crossenc.workloads import calibration_groups, calibration_queries

if TYPE_CHECKING:
    from crossenc.exporters.onnx import OnnxExportConfig

logger = logging.getLogger(__name__)

CALIBRATION_DOCS_PER_QUERY = 16  # the relevant documents plus random others, as at serving time
CALIBRATION_BATCH_SIZE = 16

# The int8 variant's recipe: the only int8 graph that kept the ranking (docs/int8-recipes.md).
DEFAULT_INT8_RECIPE: dict[str, Any] = {"optimize": "O2", "quantize": "blockwise"}
# Per mode, the format and weight type measured fastest (docs/int8-recipes.md).
DEFAULT_FORMATS = {"dynamic": ("QOperator", "QInt8"), "static": ("QDQ", "QInt8")}
# One line per mode, copied into the manifest: why this format and these types.
WHY = {
    "dynamic": "QOperator (quantize_dynamic's only format) with QInt8 weights: U8S8 VNNI kernels, ~1.5x QUInt8 "
               "weights; per-tensor activation scales follow each batch, so scores drift with batch neighbours",
    "static": "QDQ S8S8 (ORT fuses it to int8 kernels at load); fixed per-tensor activation scales from calibration",
    "blockwise": "MatMulNBits 8-bit, accuracy_level 4: int8 compute with activations quantized per block of "
                 "each token; the only int8 recipe that kept ranking on the demo reranker (Spearman 0.996-0.997, "
                 "top-10 0.94-1.0 on the bench and verification query sets), and batch-independent; block 16 as "
                 "fast as 32 and more accurate",
}
BLOCKWISE_ACCURACY_LEVEL = 4  # MatMulNBits: 4 = int8 compute (activations quantized per block at run time)
# Names for groups of nodes to keep in fp32 (``OnnxExportConfig.exclude``), matched on the exported node names.
EXCLUDE_RULES = (
    "embeddings", "attention", "attention_output", "ffn_input", "ffn_output", "last_ffn_output", "pooler", "classifier",
)


def calibration_feeds(
    source: ModelSource, pairs: Sequence[tuple[str, str]], input_names: Sequence[str], batch_size: int,
    uniform: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Model inputs for ``pairs``, batched the way CrossEncoder.predict batches them.

    ``uniform``: every batch padded to the longest pair and exactly ``batch_size`` rows (the
    remainder dropped). ORT's histogram calibrators (Entropy, Percentile) stack activations of
    all batches and need one shape; MinMax takes the natural length-sorted batches.
    """
    setup = tokenizer_setup(source)
    max_length, pad_id = setup.max_length, setup.pad_token_id
    encoded = setup.encode(list(pairs))
    buckets = (int(encoded.lengths.max()),) if uniform else None
    feeds = []
    for indices in plan_batches(encoded.lengths, batch_size=batch_size, max_tokens=batch_size * max_length):
        if uniform and len(indices) < batch_size:
            continue
        batch = collate(encoded, indices, pad_id, buckets)
        types = batch.token_type_ids if batch.token_type_ids is not None else np.zeros_like(batch.input_ids)
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "token_type_ids": types}
        feeds.append({name: arrays[name] for name in input_names})
    return feeds


def make_reader(feeds: list[dict[str, np.ndarray]]):
    """An onnxruntime CalibrationDataReader over prepared feeds (re-iterable via rewind)."""
    quantization = require("onnxruntime.quantization", "onnx", "static int8 quantization")

    class PairCalibrationReader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._iterator: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._iterator, None)

        def rewind(self) -> None:
            self._iterator = iter(feeds)

    return PairCalibrationReader()


def graph_input_names(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in initializers]


def _layer_of(name: str) -> int | None:
    for part in name.split("/"):
        if part.startswith("layer.") and part[6:].isdigit():
            return int(part[6:])
    return None


def _rule_matches(rule: str, node, last_layer: int) -> bool:
    name, op = node.name, node.op_type
    ffn_output = op == "MatMul" and "/output/dense/" in name and "/attention/" not in name
    return {
        "embeddings": op in ("EmbedLayerNormalization", "Gather"),
        "attention": op == "Attention" or (op == "MatMul" and "/attention/" in name),
        "attention_output": op == "MatMul" and "/attention/output/" in name,
        "ffn_input": op == "MatMul" and "/intermediate/" in name,
        "ffn_output": ffn_output,
        "last_ffn_output": ffn_output and _layer_of(name) == last_layer,
        "pooler": "/pooler/" in name,
        "classifier": "/classifier/" in name,
    }[rule]


def excluded_nodes(path: Path, rules: Sequence[str], gemm_aliases: bool = False) -> list[str]:
    """Names of the nodes matched by ``rules`` (see EXCLUDE_RULES) in the graph at ``path``.

    ``gemm_aliases``: also name each matched Gemm as ``<name>_MatMul``, the name quantize_dynamic
    gives it when it rewrites Gemm as MatMul + Add before matching exclusions.
    """
    import onnx

    unknown = set(rules) - set(EXCLUDE_RULES)
    if unknown:
        raise ValueError(f"unknown exclude rule(s) {sorted(unknown)}; known: {list(EXCLUDE_RULES)}")
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    layers = [layer for node in nodes if (layer := _layer_of(node.name)) is not None]
    last_layer = max(layers, default=-1)
    matched = [node for node in nodes if any(_rule_matches(rule, node, last_layer) for rule in rules)]
    aliases = [f"{node.name}_MatMul" for node in matched if gemm_aliases and node.op_type == "Gemm"]
    return [node.name for node in matched] + aliases


def _quant_types(config: "OnnxExportConfig") -> tuple[Any, Any]:
    quantization = require("onnxruntime.quantization", "onnx", "int8 quantization")
    default_format, default_weights = DEFAULT_FORMATS.get(config.quantize or "dynamic", DEFAULT_FORMATS["dynamic"])
    fmt, weights = config.quant_format or default_format, config.weight_type or default_weights
    if fmt not in ("QOperator", "QDQ"):
        raise ValueError(f"quant_format={fmt!r}; choose 'QOperator' or 'QDQ'")
    if weights not in ("QInt8", "QUInt8"):
        raise ValueError(f"weight_type={weights!r}; choose 'QInt8' or 'QUInt8'")
    return getattr(quantization.QuantFormat, fmt), getattr(quantization.QuantType, weights)


def quantize_dynamic_graph(source_file: Path, target: Path, config: "OnnxExportConfig") -> dict[str, Any]:
    """Per-batch, per-tensor activation scales; int8 weights; no calibration. Batch-dependent."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    _, weight_type = _quant_types(config)
    # Without the aliases an excluded Gemm (pooler, classifier) is quantized regardless.
    exclude = excluded_nodes(source_file, config.exclude, gemm_aliases=True)
    quantize_dynamic(
        str(source_file), str(target), per_channel=config.per_channel, weight_type=weight_type,
        nodes_to_exclude=exclude, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return {"mode": "dynamic", "why": WHY["dynamic"], "format": "QOperator", "weight_type": weight_type.name,
            "per_channel": config.per_channel, "nodes_excluded": exclude}


def _with_shapes(source_file: Path, workdir: Path) -> Path:
    """Symbolic shape inference, so outputs of fused contrib ops get types and can be calibrated."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = workdir / f"{source_file.stem}_shapes.onnx"
    quant_pre_process(str(source_file), str(target), skip_optimization=True)
    return target


def quantize_static_graph(
    source: ModelSource, source_file: Path, target: Path, config: "OnnxExportConfig", workdir: Path
) -> dict[str, Any]:
    """Fixed activation scales calibrated on real pairs; batch-independent."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quant_format, weight_type = _quant_types(config)
    method = getattr(CalibrationMethod, config.calibration_method, None)
    if method is None:
        raise ValueError(f"calibration_method={config.calibration_method!r}; choose MinMax, Entropy or Percentile")
    shaped = _with_shapes(source_file, workdir)
    queries, origin = calibration_queries(config.calibration_file)
    groups = calibration_groups(queries, config.calibration_queries, CALIBRATION_DOCS_PER_QUERY)
    pairs = [pair for group in groups for pair in group]
    uniform = config.calibration_method != "MinMax"
    feeds = calibration_feeds(source, pairs, graph_input_names(shaped), CALIBRATION_BATCH_SIZE, uniform)
    exclude = excluded_nodes(shaped, config.exclude)
    activation_type = QuantType.QUInt8 if quant_format == QuantFormat.QOperator else QuantType.QInt8
    quantize_static(
        str(shaped), str(target), make_reader(feeds), quant_format=quant_format,
        op_types_to_quantize=["MatMul"], per_channel=config.per_channel, activation_type=activation_type,
        weight_type=weight_type, nodes_to_exclude=exclude, calibrate_method=method,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
    )
    return {"mode": "static", "why": WHY["static"], "format": quant_format.name, "activation_type": activation_type.name,
            "weight_type": weight_type.name, "per_channel": config.per_channel, "nodes_excluded": exclude,
            "calibration": {"method": config.calibration_method, "pairs": len(pairs), "queries": len(groups),
                            "source": origin}}


def _import_nbits_quantizer():
    """Import MatMulNBitsQuantizer without its module-level ``logging.basicConfig(level=INFO)`` taking effect."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)  # basicConfig is a no-op while the root logger has a handler
    try:
        return importlib.import_module("onnxruntime.quantization.matmul_nbits_quantizer")
    finally:
        root.removeHandler(guard)


def quantize_blockwise_graph(source_file: Path, target: Path, config: "OnnxExportConfig") -> dict[str, Any]:
    """8-bit block-wise weights (MatMulNBits) with int8 compute; activations quantized per block at run time."""
    import onnx

    nbits = _import_nbits_quantizer()
    DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer = nbits.DefaultWeightOnlyQuantConfig, nbits.MatMulNBitsQuantizer
    exclude = excluded_nodes(source_file, config.exclude)
    algorithm = DefaultWeightOnlyQuantConfig(
        block_size=config.block_size, is_symmetric=True, accuracy_level=BLOCKWISE_ACCURACY_LEVEL, bits=8
    )
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(source_file)), bits=8, block_size=config.block_size, is_symmetric=True,
        accuracy_level=BLOCKWISE_ACCURACY_LEVEL, nodes_to_exclude=exclude, algo_config=algorithm,
    )
    quantizer_logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    previous = quantizer_logger.level
    quantizer_logger.setLevel(logging.WARNING)  # it logs every node at INFO
    try:
        quantizer.process()
    finally:
        quantizer_logger.setLevel(previous)
    quantizer.model.save_model_to_file(str(target))
    return {"mode": "blockwise", "why": WHY["blockwise"], "op": "com.microsoft.MatMulNBits", "bits": 8, "block_size": config.block_size,
            "symmetric": True, "accuracy_level": BLOCKWISE_ACCURACY_LEVEL, "nodes_excluded": exclude}


def quantize_graph(
    source: ModelSource, source_file: Path, target: Path, config: "OnnxExportConfig", workdir: Path
) -> dict[str, Any]:
    """Quantize ``source_file`` into ``target`` per ``config.quantize``; returns the recipe for the manifest."""
    require("onnxruntime.quantization", "onnx", "int8 quantization")
    if config.quantize == "dynamic":
        return quantize_dynamic_graph(source_file, target, config)
    if config.quantize == "blockwise":
        return quantize_blockwise_graph(source_file, target, config)
    return quantize_static_graph(source, source_file, target, config, workdir)
