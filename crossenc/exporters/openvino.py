"""Export a cross-encoder to OpenVINO IR (fp32, or int8 through NNCF), verify it, write a manifest.

``export_openvino(model, OpenVINOExportConfig(...), output_dir)`` writes one folder holding
``openvino_model.xml/.bin``, the tokenizer and config files, and ``crossenc_manifest.json``.

Conversion goes through ``torch.export`` (dynamic batch and sequence) and ``ov.convert_model``.
The TorchScript route is only a fallback: with transformers 5 it traces the 2D -> 4D padding-mask
indexing wrongly for shapes other than the example (logits off by 30+ on MiniLM), while the
``torch.export`` graph keeps that indexing symbolic and matches torch eager to ~1e-5.

int8 (NNCF) lives in :mod:`crossenc.exporters.openvino_quantize`; why its defaults: docs/int8-recipes.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossenc.backends import LoadRequest
from crossenc.backends.torch_backend.first_token import GRAPH_REVISION, export_model, last_layer_note
from crossenc.exporters.base import (
    ExportResult,
    add_common_arguments,
    as_source,
    copy_support_files,
    export_summary,
    tolerance_from_args,
    write_export,
)
from crossenc.exporters.openvino_quantize import DEFAULT_KEEP_FLOAT, DEFAULT_SUBSET_SIZE, FLOAT_SCOPES, quantize_ir
from crossenc.exporters.verify import compare_logits
from crossenc.manifest import tool_versions, write_manifest
from crossenc.model_source import ModelSource, position_limit
from crossenc.optional import require
from crossenc.quality import TOLERANCES, Tolerance, VerificationReport

logger = logging.getLogger(__name__)

IR_NAME = "openvino_model.xml"
QUANTIZE_CHOICES = (None, "int8")
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
    graph_revision: int = GRAPH_REVISION  # in the manifest's config: a cached export of an older graph is rebuilt

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
    model = export_model(model, first_token)
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
    attn = getattr(model.config, "_attn_implementation", None) or attn  # eager where the model has no SDPA
    return ov_model, {"converter": f"{route} + openvino.convert_model", "attn_implementation": attn, "inputs": names,
                      "last_layer": last_layer_note(model)}


# --------------------------------------------------------------------------- files


def build_ir(source: ModelSource, config: OpenVINOExportConfig, target: Path) -> dict[str, Any]:
    """Convert (and quantize) ``source``; save ``target`` (.xml + .bin). Returns what each step did."""
    ov = require("openvino", "openvino", "OpenVINO export")
    hf_config = source.load_config()
    ov_model, details = convert_model(source, hf_config, config.first_token)
    if config.quantize == "int8":
        ov_model, details["quantization"] = quantize_ir(source, ov_model, details["inputs"], config)
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
    from crossenc.backends.openvino_backend import instead_of
    from crossenc.exporters.locate import ensure_export, export_cache_dir, load_refusal

    fields = dict(request.options.get("export") or {})
    config = OpenVINOExportConfig(**{**fields, "quantize": "int8" if request.variant == "int8" else None})
    folder = export_cache_dir(request.source, "openvino", config.variant)
    ensure_export(
        folder, config.to_dict(), lambda: export_openvino(request.source, config, output_dir=folder),
        request.flag("allow_unverified"), f"OpenVINO export ({config.variant})",
        load_refusal(request, "openvino", instead_of(request.variant)),
    )
    return folder / IR_NAME


# --------------------------------------------------------------------------- CLI
def add_openvino_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``crossenc export openvino MODEL OUT [...]`` (positionals included)."""
    add_common_arguments(parser)
    parser.add_argument("--quantize", choices=["int8"], default=None, help="int8 post-training quantization (NNCF)")
    parser.add_argument("--subset-size", type=int, default=DEFAULT_SUBSET_SIZE, help="calibration pairs")
    parser.add_argument("--keep-float", default=",".join(DEFAULT_KEEP_FLOAT), metavar="SCOPES",
                        help=f"comma-separated MatMul groups int8 leaves in float ({', '.join(FLOAT_SCOPES)}) "
                        "or 'none'")
    parser.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                        help="node-name regex NNCF leaves in float (repeatable)")
    parser.add_argument("--smooth-quant-alpha", type=float, default=None,
                        help="SmoothQuant alpha for MatMuls (-1: off)")
    parser.add_argument("--fp16-weights", action="store_true", help="store weights as fp16 (fp16 tolerance applies)")


def run_openvino(args: argparse.Namespace) -> int:
    """Run the export the arguments describe and print its verification summary (VerificationFailed: the CLI's)."""
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
    config = dataclasses.replace(config, tolerance=tolerance_from_args(args, config.precision))
    print(export_summary(export_openvino(args.model, config, args.output)))
    return 0
