"""Export a cross-encoder to OpenVINO IR (fp32, or int8 through NNCF), verify it, write a manifest.

``export_openvino(model, OpenVINOExportConfig(...), output_dir)`` writes one folder holding
``openvino_model.xml/.bin``, the tokenizer and config files, and ``crossenc_manifest.json``.

Conversion goes through ``torch.export`` (dynamic batch and sequence) and ``ov.convert_model``.
The TorchScript route is only a fallback: with transformers 5 it traces the 2D -> 4D padding-mask
indexing wrongly for shapes other than the example (logits off by 30+ on MiniLM), while the
``torch.export`` graph keeps that indexing symbolic and matches torch eager to ~1e-5.

int8 recipe, measured on the demo MiniLM-L6 (Debian held-out queries 300-309 x 100 documents,
Spearman / top-10 agreement vs torch fp32; NNCF MIXED preset, transformer model type, 300
calibration pairs from the training queries):
  NNCF defaults (SmoothQuant 0.95)               0.963 / 0.83   (3 queries)
  SmoothQuant alpha 0.5 / off                     0.926 / 0.77, 0.890 / 0.73 (3 queries)
  fast_bias_correction=False                      0.965 / 0.87   (3 queries)
  keep head in float                              0.988 / 0.86
  ... + 600 calibration pairs                     0.987 / 0.82
  ... + SmoothQuant 0.8                           0.986 / 0.84
  ... + last layer in float                       0.993 / 0.84
  ... + FFN output MatMuls in float (default)     0.994 / 0.90   (~20 % slower than head only)
  ... + attention output in float                 0.995 / 0.91
  ... + whole FFN in float                        0.996 / 0.88   (as slow as bf16 on this CPU)
  default + SmoothQuant 0.5 / off / slow bias corr. 0.989 / 0.89, 0.947 / 0.76, 0.994 / 0.89

Second search (2026-11-27), Debian queries 300-339 x 100 (4000 pairs; bench 10 in brackets),
pairs/s of one process with two infer requests on 2 cores (sentence-transformers fp32: ~49):
  fp32 IR, bf16 inference (the bf16 variant)      146/s  0.9987 / 0.957 [0.940]  centred rms 0.040
  default int8 (head + FFN output float)          179/s  0.9936 / 0.918 [0.890]  0.105
  ... float ops in f32 instead of bf16            130/s  0.9948 / 0.910 [0.900]  0.109
  everything int8 / head float only               205/s  0.9685 / 0.840, 209/s 0.9888 / 0.898  0.146
  head + one layer's FFN output float (each of 6) 196-203/s  0.9894-0.9904 / 0.880-0.905  0.134-0.143
  head float, SDPA inputs (Q, K) not quantized    213/s  0.9896 / 0.873  0.141
  activation ranges MEAN_QUANTILE / HISTOGRAM     202/s 0.949 / 0.775, 206/s 0.987 / 0.887 (clipping hurts)
  weight-only int8 (compress_weights), bf16       135/s  0.9970 / 0.955  0.066 (slower than bf16)
  ... + CPU dynamic quantization, group 32        158/s  some rows wrong (max abs error 2e4)
  QAT-style distillation (fake-quant int8, 60 steps on 2 cores) centred rms 0.37 -> 0.32: far too slow here
The int8 error is spread evenly over the layers (no single MatMul dominates), so no float scope
gets top-10 >= 0.95 at >= 4x: every static int8 recipe that is fast enough ranks like top-10 ~0.9.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossenc.errors import VerificationFailed
from crossenc.exporters.base import (
    ExportResult,
    as_source,
    copy_support_files,
    write_export,
)
from crossenc.backends import LoadRequest
from crossenc.backends.torch_backend.first_token import first_token_model, last_layer_note
from crossenc.exporters.verify import compare_logits
from crossenc.manifest import tool_versions, write_manifest
from crossenc.model_source import ModelSource, position_limit
from crossenc.optional import require
from crossenc.quality import TOLERANCES, Tolerance, VerificationReport
from crossenc.workloads import calibration_queries, sample_pairs

logger = logging.getLogger(__name__)

IR_NAME = "openvino_model.xml"
QUANTIZE_CHOICES = (None, "int8")
DEFAULT_SUBSET_SIZE = 300  # calibration pairs (one pair per NNCF sample: no padding in the statistics)
# MatMul groups that int8 may leave in float, found from the graph's structure (any encoder):
# head = after the last LayerNorm (pooler, classifier); ffn_output = fed by the FFN activation
# (its outliers hurt most); attention_output = fed by the attention result; attention = the
# activation x activation products (ScaledDotProductAttention ops, and the explicit q.k / p.v
# MatMuls of a first-token last layer): int8 queries and keys move scores and gain little speed;
# last_layer = every MatMul of the last encoder layer (cheap in a first-token graph).
FLOAT_SCOPES = ("head", "ffn_output", "attention_output", "attention", "last_layer")
DEFAULT_KEEP_FLOAT = ("head", "ffn_output", "attention", "last_layer")
ACTIVATION_TYPES = frozenset({"Gelu", "Swish", "Relu", "HSwish", "Mish"})
PASS_THROUGH_TYPES = frozenset({"Reshape", "Transpose", "Convert", "Squeeze", "Unsqueeze"})
EXAMPLE_SHAPE = (2, 8)  # batch, sequence of the example input torch.export traces with


@dataclass(frozen=True)
class OpenVINOExportConfig:
    """How to export. Defaults: fp32 IR with fp32 weights, verified against torch eager fp32."""

    quantize: str | None = None  # None or "int8" (NNCF post-training quantization)
    compress_to_fp16: bool = False  # store weights as fp16 (half the file; fp16 tolerance applies)
    calibration_file: str | None = None  # JSONL {"query", "documents"}; None: Debian training queries
    subset_size: int = DEFAULT_SUBSET_SIZE  # calibration pairs
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT  # MatMul groups NNCF leaves in float, see FLOAT_SCOPES
    ignored_patterns: tuple[str, ...] = ()  # extra regexes of node names NNCF leaves in float
    smooth_quant_alpha: float | None = None  # None: NNCF's transformer default; -1 turns SmoothQuant off
    fast_bias_correction: bool = True
    tolerance: Tolerance | None = None  # None: TOLERANCES[precision]
    verify: bool = True
    verify_bf16: bool = True  # fp32 IR on a bf16 CPU: also record a bf16-inference report (not gating)
    verification_file: str | None = None  # JSONL {"query", "documents"}; None: default_verification_set()
    seed: int = 0  # calibration sampling
    first_token: bool = True  # last layer for the first token only (crossenc.backends.torch_backend.first_token)

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"quantize={self.quantize!r}; choose None (fp32) or 'int8'")
        if not isinstance(self.subset_size, int) or self.subset_size <= 0:
            raise ValueError(f"subset_size={self.subset_size!r}; expected a positive number of calibration pairs")
        unknown = set(self.keep_float) - set(FLOAT_SCOPES)
        if unknown:
            raise ValueError(
                f"keep_float={list(self.keep_float)!r}: unknown {sorted(unknown)}; choose from {list(FLOAT_SCOPES)}"
            )
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        if isinstance(self.tolerance, dict):
            object.__setattr__(self, "tolerance", Tolerance(**self.tolerance))
        object.__setattr__(self, "ignored_patterns", tuple(self.ignored_patterns))

    @property
    def precision(self) -> str:
        """Key into TOLERANCES."""
        return "int8" if self.quantize else "fp16" if self.compress_to_fp16 else "fp32"

    @property
    def variant(self) -> str:
        """Artifact name: 'fp32' (serves the backend's fp32 and bf16 variants), 'int8' or 'fp16-weights'."""
        return {"fp16": "fp16-weights"}.get(self.precision, self.precision)

    @property
    def backend_variant(self) -> str:
        """The openvino backend variant that runs this artifact at its exported precision."""
        return "int8" if self.quantize else "fp32"

    def effective_tolerance(self) -> Tolerance:
        return self.tolerance or TOLERANCES[self.precision]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists), so a manifest's copy compares equal to a fresh one."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --------------------------------------------------------------------------- conversion


def input_names(source: ModelSource) -> list[str]:
    """The token inputs crossenc will feed: token_type_ids only when the tokenizer emits them."""
    tokenizer = source.load_tokenizer()
    type_ids = ["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else []
    return ["input_ids", "attention_mask", *type_ids]


def _example_inputs(names: list[str], vocab_size: int) -> dict[str, Any]:
    import torch

    rows, length = EXAMPLE_SHAPE
    ids = torch.arange(rows * length, dtype=torch.long).reshape(rows, length) % max(1, min(100, vocab_size - 1)) + 1
    example = {"input_ids": ids}
    example["attention_mask"] = torch.ones(rows, length, dtype=torch.long)
    example["attention_mask"][1, length // 2 :] = 0  # one padded row: the mask path is exercised
    if "token_type_ids" in names:
        example["token_type_ids"] = torch.zeros(rows, length, dtype=torch.long)
        example["token_type_ids"][:, length // 2 :] = 1
    return example


def convert_model(source: ModelSource, hf_config, first_token: bool = True) -> tuple[Any, dict[str, Any]]:
    """The ov.Model of ``source`` with inputs [batch, sequence] and one output named ``logits``."""
    import torch

    ov = require("openvino", "openvino", "OpenVINO export")
    names = input_names(source)
    attn = source.model_kwargs.get("attn_implementation", "sdpa")
    model = source.load_torch_model(hf_config, complete_for="an OpenVINO export", attn_implementation=attn).eval()
    if first_token:
        model = first_token_model(model)
    example = _example_inputs(names, int(getattr(hf_config, "vocab_size", 0) or 100))
    max_length = position_limit(hf_config) or 512
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        sequence = torch.export.Dim("sequence", min=2, max=max_length)
        with torch.no_grad():
            exported = torch.export.export(
                model, args=(), kwargs=example, dynamic_shapes={name: {0: batch, 1: sequence} for name in names}
            )
        ov_model = ov.convert_model(exported)
        route = "torch.export"
    except Exception as error:  # noqa: BLE001 - any exporter failure falls back; verification judges the result
        logger.warning("torch.export failed for %s (%s); falling back to TorchScript tracing", source.name, error)
        shapes = [(name, [-1, -1], ov.Type.i64) for name in names]
        with torch.no_grad():
            ov_model = ov.convert_model(model, example_input=example, input=shapes)
        route = "torchscript"
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model, {"converter": f"{route} + openvino.convert_model", "attn_implementation": attn, "inputs": names,
                      "last_layer": last_layer_note(model)}


# --------------------------------------------------------------------------- int8
def calibration_pairs(config: OpenVINOExportConfig) -> tuple[list[tuple[str, str]], str]:
    """``subset_size`` (query, document) pairs sampled from the calibration file or Debian training queries."""
    queries, origin = calibration_queries(config.calibration_file)
    pairs = sample_pairs(queries, config.subset_size, config.seed)
    if not pairs:
        raise ValueError(f"calibration set {origin} has no (query, document) pairs")
    return pairs, origin


def calibration_inputs(
    source: ModelSource, pairs: list[tuple[str, str]], names: list[str]
) -> list[dict[str, np.ndarray]]:
    """One model input per pair, tokenized exactly as CrossEncoder does (encode_pairs + collate)."""
    from crossenc.batching import collate, encode_pairs
    from crossenc.model_source import usable_max_length

    tokenizer = source.load_tokenizer()
    hf_config = source.load_config()
    max_length = usable_max_length(tokenizer, hf_config)
    encoded = encode_pairs(tokenizer, pairs, max_length, "token_type_ids" in names)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    items = []
    for index in range(len(pairs)):
        batch = collate(encoded, np.array([index]), pad_id)
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


def float_scope_nodes(ov_model, scopes: tuple[str, ...]) -> list[str]:
    """Friendly names of the MatMuls (and attention ops) in ``scopes`` (see FLOAT_SCOPES)."""
    ops = list(ov_model.get_ordered_ops())
    norms = [i for i, op in enumerate(ops) if op.get_type_name() == "MVN"] or [len(ops)]
    last_norm = norms[-1]
    last_layer_start = norms[-3] if len(norms) >= 3 else -1  # the output LayerNorm of the layer before
    chosen = []
    for position, op in enumerate(ops):
        if op.get_type_name() != "MatMul":
            continue
        producer = _producer(op).get_type_name()
        weighted = _producer(op, 1).get_type_name() == "Constant"
        if (
            ("head" in scopes and position > last_norm)
            or ("ffn_output" in scopes and producer in ACTIVATION_TYPES)
            or ("attention_output" in scopes and producer in ("ScaledDotProductAttention", "MatMul"))
            or ("attention" in scopes and not weighted)
            or ("last_layer" in scopes and last_layer_start < position < last_norm)
        ):
            chosen.append(op.get_friendly_name())
    if "attention" in scopes:
        chosen += [op.get_friendly_name() for op in ops if op.get_type_name() == "ScaledDotProductAttention"]
    return chosen


def quantize_int8(
    ov_model, items: list[dict[str, np.ndarray]], config: OpenVINOExportConfig
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


# --------------------------------------------------------------------------- files


def build_ir(source: ModelSource, config: OpenVINOExportConfig, target: Path) -> dict[str, Any]:
    """Convert (and quantize) ``source``; save ``target`` (.xml + .bin). Returns what each step did."""
    ov = require("openvino", "openvino", "OpenVINO export")
    hf_config = source.load_config()
    ov_model, details = convert_model(source, hf_config, config.first_token)
    if config.quantize == "int8":
        pairs, origin = calibration_pairs(config)
        items = calibration_inputs(source, pairs, details["inputs"])
        ov_model, quantization = quantize_int8(ov_model, items, config)
        details["quantization"] = {"tool": "nncf.quantize", "calibration": origin, "pairs": len(items), **quantization}
    ov.save_model(ov_model, str(target), compress_to_fp16=config.compress_to_fp16)
    details["weights"] = "fp16" if config.compress_to_fp16 else "fp32"
    return details


# --------------------------------------------------------------------------- verification


def verify_artifact(
    source: ModelSource, folder: Path, config: OpenVINOExportConfig
) -> tuple[VerificationReport, VerificationReport | None]:
    """Reports for the exported precision and, for an fp32 IR on a bf16 CPU, for bf16 inference."""
    from crossenc.exporters.verify import ArtifactScorer, default_verification_set, load_verification_file
    from crossenc.hardware import has_cpu_bf16

    verification_set = (
        load_verification_file(config.verification_file) if config.verification_file else default_verification_set()
    )
    reference = ArtifactScorer(source.path, source, "torch", "eager", "cpu", model_kwargs=source.model_kwargs)
    reference_logits = reference.logits(verification_set.pairs)

    def check(variant: str, tolerance: Tolerance) -> VerificationReport:
        candidate = ArtifactScorer(folder, source, "openvino", variant, "cpu", {"file_name": IR_NAME},
                                   max_length=reference.max_length)
        report = compare_logits(reference_logits, candidate.logits(verification_set.pairs), verification_set.groups,
                                tolerance, f"openvino {config.variant} ({variant} inference)", verification_set.source)
        logger.info(report.summary())
        return report

    primary = check(config.backend_variant, config.effective_tolerance())
    bf16 = None
    if config.verify_bf16 and not config.quantize and has_cpu_bf16():
        bf16 = check("bf16", TOLERANCES["bf16"])
    return primary, bf16


# --------------------------------------------------------------------------- the verb
def export_openvino(
    model: str | os.PathLike | ModelSource,
    config: OpenVINOExportConfig | None = None,
    output_dir: str | os.PathLike | None = None,
) -> ExportResult:
    """Export ``model`` per ``config`` into ``output_dir`` (default: the crossenc export cache), verified.

    ``output_dir`` is replaced only by an artifact that passed verification (or whose verification
    was skipped, ``verify=False``: its manifest says ``"verified": false``). One that fails is kept
    at ``<output_dir>.failed`` with the numbers in its manifest, ``output_dir`` is left as it was,
    and the call raises VerificationFailed carrying the report and the ``.failed`` path. The
    manifest's ``verification["bf16_inference"]`` holds the (informational) bf16 report.
    """
    config = config or OpenVINOExportConfig()
    require("openvino", "openvino", "OpenVINO export")
    source = as_source(model)
    if output_dir is None:
        from crossenc.exporters.locate import export_cache_dir

        output_dir = export_cache_dir(source, "openvino", config.variant)

    def build(staging: Path) -> tuple[dict[str, Any], VerificationReport | None]:
        details = build_ir(source, config, staging / IR_NAME)
        details["copied_files"] = copy_support_files(source, staging)
        report, bf16_report = verify_artifact(source, staging, config) if config.verify else (None, None)
        verification = report.to_dict() if report else None
        if verification is not None and bf16_report is not None:
            verification["bf16_inference"] = bf16_report.to_dict()
        manifest = write_manifest(
            staging,
            artifact_format="openvino",
            variant=config.variant,
            source_name=source.name,
            source_revision=source.revision,
            source_dir=source.path,
            export_config={"config": config.to_dict(), "file": IR_NAME, **details},
            tools=tool_versions("openvino", "nncf"),
            verification=verification,
        )
        return manifest, report

    return write_export(
        output_dir, build, f"OpenVINO export {IR_NAME} ({config.variant})",
        "For int8 calibrate on your own queries (--calibration) or keep more MatMuls in float (--keep-float), or "
        "loosen the tolerance only if these numbers are acceptable.",
    )


def export_for_load(request: LoadRequest) -> Path:
    """The openvino backend's IR for ``request`` when its model folder has none: a complete, matching export in
    the cache, else a fresh verified one there; the fp32 IR serves the fp32 and bf16 variants."""
    from crossenc.exporters.locate import ensure_export, export_cache_dir

    fields = dict(request.options.get("export") or {})
    config = OpenVINOExportConfig(**{**fields, "quantize": "int8" if request.variant == "int8" else None})
    folder = export_cache_dir(request.source, "openvino", config.variant)
    ensure_export(
        folder, config.to_dict(), lambda: export_openvino(request.source, config, output_dir=folder),
        request.flag("allow_unverified"), f"OpenVINO export ({config.variant})",
    )
    return folder / IR_NAME


# --------------------------------------------------------------------------- CLI
def add_openvino_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``crossenc export openvino MODEL OUT [...]`` (positionals included)."""
    parser.add_argument("model", help="model folder, Hub id, or 'demo'")
    parser.add_argument("output", help="folder to write (replaced atomically, and only by a verified export: one that "
                        "fails verification is kept in OUTPUT.failed)")
    parser.add_argument("--quantize", choices=["int8"], default=None, help="int8 post-training quantization (NNCF)")
    parser.add_argument("--calibration", default=None, metavar="FILE",
                        help="JSONL of {query, documents} to calibrate int8 on (default: Debian training queries)")
    parser.add_argument("--subset-size", type=int, default=DEFAULT_SUBSET_SIZE, help="calibration pairs")
    parser.add_argument("--keep-float", default=",".join(DEFAULT_KEEP_FLOAT), metavar="SCOPES",
                        help=f"comma-separated MatMul groups int8 leaves in float ({', '.join(FLOAT_SCOPES)}) "
                        "or 'none'")
    parser.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                        help="node-name regex NNCF leaves in float (repeatable)")
    parser.add_argument("--smooth-quant-alpha", type=float, default=None,
                        help="SmoothQuant alpha for MatMuls (-1: off)")
    parser.add_argument("--fp16-weights", action="store_true", help="store weights as fp16 (fp16 tolerance applies)")
    parser.add_argument("--verify-file", default=None, metavar="FILE", help="JSONL of {query, documents} to verify on")
    parser.add_argument("--no-verify", action="store_true", help="skip verification (manifest says verified: false)")
    parser.add_argument("--max-abs", type=float, default=None, help="tolerance override: max |logit difference|")
    parser.add_argument("--min-spearman", type=float, default=None, help="tolerance override: mean per-query Spearman")
    parser.add_argument("--min-top-k", type=float, default=None, help="tolerance override: mean top-10 agreement")


def _tolerance_from_args(args: argparse.Namespace, precision: str) -> Tolerance | None:
    overrides = {"max_abs": args.max_abs, "spearman": args.min_spearman, "top_k_agreement": args.min_top_k}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(TOLERANCES[precision], **overrides) if overrides else None


def run_openvino(args: argparse.Namespace) -> int:
    """Run the export the arguments describe; print the verification summary; 1 when it failed."""
    config = OpenVINOExportConfig(
        quantize=args.quantize,
        compress_to_fp16=args.fp16_weights,
        calibration_file=args.calibration,
        subset_size=args.subset_size,
        keep_float=tuple(scope for scope in args.keep_float.split(",") if scope and scope != "none"),
        ignored_patterns=tuple(args.ignore),
        smooth_quant_alpha=args.smooth_quant_alpha,
        verify=not args.no_verify,
        verification_file=args.verify_file,
    )
    precision_config = dataclasses.replace(config, tolerance=_tolerance_from_args(args, config.precision))
    try:
        result = export_openvino(args.model, precision_config, args.output)
    except VerificationFailed as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    summary = result.report.summary() if result.report else "verification skipped"
    print(f"{result.path / IR_NAME}: {summary}")
    return 0
