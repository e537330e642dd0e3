"""int8 quantization of an exported ONNX graph: dynamic, or static calibrated on real (query, document) pairs.

Calibration pairs are tokenized exactly as crossenc tokenizes at run time (encode_pairs +
collate, length-sorted batches), from the user's JSONL file or the Debian workload's training
queries (``queries[:FIT_QUERIES]``; never the held-out ones used for verification and benchmarks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crossenc.model_source import ModelSource
from crossenc.optional import require

if TYPE_CHECKING:
    from crossenc.exporters.onnx import OnnxExportConfig

logger = logging.getLogger(__name__)

CALIBRATION_DOCS_PER_QUERY = 16  # the relevant documents plus random others, as at serving time
CALIBRATION_BATCH_SIZE = 16
DEFAULT_INT8_RECIPE: dict[str, Any] = {"optimize": "O2", "quantize": "dynamic"}  # replaced by the measured best
# Per mode, the format and weight type measured fastest (see DEFAULT_INT8_RECIPE's comment).
DEFAULT_FORMATS = {"dynamic": ("QOperator", "QInt8"), "static": ("QDQ", "QInt8")}
EXCLUDE_RULES = ("classifier", "pooler", "last_ffn_output", "ffn_output")


def calibration_groups(config: "OnnxExportConfig", seed: int = 0) -> list[list[tuple[str, str]]]:
    """(query, document) groups to calibrate on: the user's file, else Debian training queries."""
    from crossenc.bench.workload import FIT_QUERIES, load_debian, load_jsonl

    rng = np.random.default_rng(seed)
    if config.calibration_file:
        queries = load_jsonl(config.calibration_file).queries
    else:
        queries = load_debian().queries[:FIT_QUERIES]
    chosen = rng.choice(len(queries), size=min(config.calibration_queries, len(queries)), replace=False)
    groups = []
    for index in sorted(chosen.tolist()):
        query = queries[index]
        others = [i for i in range(len(query.documents)) if i not in query.relevant]
        take = max(0, min(CALIBRATION_DOCS_PER_QUERY - len(query.relevant), len(others)))
        picked = set(rng.choice(len(others), size=take, replace=False).tolist()) if take else set()
        documents = sorted(query.relevant | {others[i] for i in picked})
        groups.append([(query.query, query.documents[i]) for i in documents])
    return groups


def calibration_feeds(
    source: ModelSource, pairs: Sequence[tuple[str, str]], input_names: Sequence[str], batch_size: int
) -> list[dict[str, np.ndarray]]:
    """Model inputs for ``pairs``, batched the way CrossEncoder.predict batches them."""
    from crossenc.batching import collate, encode_pairs, plan_batches

    tokenizer = source.load_tokenizer()
    config = source.load_config()
    from crossenc.model_source import default_max_length

    max_length = default_max_length(tokenizer, config)
    use_types = "token_type_ids" in tokenizer.model_input_names
    encoded = encode_pairs(tokenizer, list(pairs), max_length, use_types)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    feeds = []
    for indices in plan_batches(encoded.lengths, batch_size=batch_size):
        batch = collate(encoded, indices, pad_id)
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                  "token_type_ids": batch.token_type_ids if batch.token_type_ids is not None else np.zeros_like(batch.input_ids)}
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


def excluded_nodes(path: Path, rules: Sequence[str]) -> list[str]:
    """Node names matched by ``rules`` (see EXCLUDE_RULES) in the graph at ``path``."""
    import onnx

    unknown = set(rules) - set(EXCLUDE_RULES)
    if unknown:
        raise ValueError(f"unknown exclude rule(s) {sorted(unknown)}; known: {list(EXCLUDE_RULES)}")
    model = onnx.load(str(path), load_external_data=False)
    names = [node.name for node in model.graph.node if node.op_type in ("MatMul", "Gemm")]
    layers = sorted({int(part.split(".")[1]) for name in names for part in name.split("/") if part.startswith("layer.")})
    last = layers[-1] if layers else -1
    chosen = []
    for name in names:
        if ("classifier" in rules and "/classifier/" in name) or ("pooler" in rules and "/pooler/" in name):
            chosen.append(name)
        elif "/output/dense/" in name and "/attention/" not in name:
            if "ffn_output" in rules or ("last_ffn_output" in rules and f"layer.{last}/" in name):
                chosen.append(name)
    return chosen
