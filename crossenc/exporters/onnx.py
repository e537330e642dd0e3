"""Export a cross-encoder to ONNX, optionally fuse (O1..O4) and quantize it, verify it, write a manifest.

``export_onnx(model, OnnxExportConfig(...), output_dir)`` writes one folder holding the graph,
the tokenizer and config files, and ``crossenc_manifest.json``. File names follow
sentence-transformers / optimum: ``model.onnx`` (plain), ``model_O1.onnx`` .. ``model_O4.onnx``
(graph-optimized), ``model_qint8.onnx`` (int8, dynamic or static; the manifest says which).

Exporter choice (recorded in the manifest): ``torch.onnx.export(dynamo=False)`` of the model
loaded with ``attn_implementation="eager"``. Its graph is what ORT's BERT optimizer pattern-matches:
on MiniLM-L6 it fuses 6 Attention, 1 EmbedLayerNormalization, 12 SkipLayerNormalization and
6 BiasGelu. The dynamo exporter (torch 2.13, onnxscript 0.7) also works but yields no Attention
or EmbedLayerNormalization fusion, so it is opt-in (``dynamo=True``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import warnings
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
from crossenc.exporters.onnx_quantize import DEFAULT_INT8_RECIPE, quantize_graph
from crossenc.manifest import tool_versions, write_manifest
from crossenc.model_source import ModelSource
from crossenc.optional import require
from crossenc.quality import TOLERANCES, Tolerance, VerificationReport

logger = logging.getLogger(__name__)

MIN_OPSET = 17  # LayerNormalization is a standard op from 17 on
OPTIMIZE_LEVELS = ("O1", "O2", "O3", "O4")
QUANTIZE_MODES = ("blockwise", "dynamic", "static")  # blockwise: the int8 variant's default
DEFAULT_QUANTIZE = "blockwise"  # `--quantize` alone: the int8 variant's recipe (onnx_quantize.DEFAULT_INT8_RECIPE)
# Hugging Face model_type -> onnxruntime.transformers optimizer model_type (the bert family shares one optimizer;
# optimum's ORTConfigManager maps the same way).
ORT_MODEL_TYPES = {
    "bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert", "distilbert": "bert",
    "electra": "bert", "albert": "bert", "mpnet": "bert", "ernie": "bert", "deberta": "bert", "deberta-v2": "bert",
    "big_bird": "bert",
}
FP16_EXTRA_BLOCKED_OPS = ("LayerNormalization", "Softmax")  # unfused stragglers stay fp32 in O4


@dataclass(frozen=True)
class OnnxExportConfig:
    """How to export. Defaults give the plain fp32 graph; ``config_for_variant`` gives the backend's recipes."""

    opset: int = 17
    optimize: str | None = None  # None, "O1" (ORT basic), "O2" (+ transformer fusions), "O3" (+ GELU approx), "O4" (+ fp16, CUDA)
    quantize: str | None = None  # None, "blockwise" (int8 variant default), "dynamic", "static"
    quant_format: str | None = None  # "QOperator" | "QDQ"; None: the measured-best for the mode
    weight_type: str | None = None  # "QInt8" | "QUInt8"; None: the measured-best for the mode
    per_channel: bool = True  # dynamic / static weights
    block_size: int = 16  # blockwise: values per quantization block (16, 32, 64, 128, ...)
    calibration_file: str | None = None  # JSONL {"query", "documents"}; None: Debian training queries
    calibration_method: str = "MinMax"  # MinMax | Entropy | Percentile (static only)
    calibration_queries: int = 32  # queries taken from the calibration set
    exclude: tuple[str, ...] = ()  # op-level exclusions, see crossenc.exporters.onnx_quantize.EXCLUDE_RULES
    tolerance: Tolerance | None = None  # None: TOLERANCES[precision]
    verify: bool = True
    verification_file: str | None = None  # JSONL {"query", "documents"}; None: default_verification_set()
    device: str = "cpu"
    dynamo: bool = False
    first_token: bool = True  # last layer for the first token only (crossenc.backends.torch_backend.first_token)
    graph_revision: int = GRAPH_REVISION  # in the manifest's config: a cached export of an older graph is rebuilt

    def __post_init__(self) -> None:
        if not isinstance(self.opset, int) or self.opset < MIN_OPSET:
            raise ValueError(f"opset={self.opset!r}; crossenc exports opset >= {MIN_OPSET} (use 17 or 18)")
        if self.optimize not in (None, *OPTIMIZE_LEVELS):
            raise ValueError(f"optimize={self.optimize!r}; choose None or one of {list(OPTIMIZE_LEVELS)}")
        if self.quantize not in (None, *QUANTIZE_MODES):
            raise ValueError(f"quantize={self.quantize!r}; choose None or one of {list(QUANTIZE_MODES)}")
        if self.quantize and self.optimize == "O4":
            raise ValueError("optimize='O4' (fp16) cannot be combined with int8 quantization; use O2 or O3")
        if self.optimize == "O4" and not self.device.startswith("cuda"):
            raise ValueError("optimize='O4' converts to fp16 for CUDA; pass device='cuda' or use 'O2'/'O3' on CPU")
        if isinstance(self.tolerance, dict):
            object.__setattr__(self, "tolerance", Tolerance(**self.tolerance))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def precision(self) -> str:
        return "int8" if self.quantize else "fp16" if self.optimize == "O4" else "fp32"

    @property
    def variant(self) -> str:
        """The onnx backend variant this config produces."""
        return {"int8": "int8", "fp16": "fp16"}.get(self.precision, "optimized" if self.optimize else "plain")

    @property
    def file_name(self) -> str:
        if self.quantize:
            return "model_qint8.onnx"
        return f"model_{self.optimize}.onnx" if self.optimize else "model.onnx"

    def effective_tolerance(self) -> Tolerance:
        return self.tolerance or TOLERANCES[self.precision]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists), so a manifest's copy compares equal to a fresh one."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def config_for_variant(variant: str, device: str = "cpu", **overrides: Any) -> OnnxExportConfig:
    """The export recipe behind each onnx backend variant (int8: DEFAULT_INT8_RECIPE, the best measured)."""
    recipes: dict[str, dict[str, Any]] = {
        "plain": {},
        "optimized": {"optimize": "O2"},
        "fp16": {"optimize": "O4"},
        "int8": dict(DEFAULT_INT8_RECIPE),
    }
    if variant not in recipes:
        raise ValueError(f"unknown onnx variant {variant!r}; choose one of {list(recipes)}")
    fields = {field.name for field in dataclasses.fields(OnnxExportConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown OnnxExportConfig field(s) {sorted(unknown)}; known: {sorted(fields)}")
    return OnnxExportConfig(**{**recipes[variant], "device": device, **overrides})


# --------------------------------------------------------------------------- steps


def torch_export(
    source: ModelSource, hf_config, target: Path, opset: int, dynamo: bool, first_token: bool = True
) -> dict[str, Any]:
    """``torch.onnx.export`` with dynamic batch and sequence axes; inputs the model's tokenizer emits."""
    import torch

    model = source.load_torch_model(hf_config, complete_for="an ONNX export", attn_implementation="eager").eval()
    model = export_model(model, first_token)
    tokenizer = source.load_tokenizer()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else [])
    sample = {name: torch.ones(2, 16, dtype=torch.long) for name in names}
    sample["input_ids"] = torch.full((2, 16), tokenizer.unk_token_id or 1, dtype=torch.long)
    if "token_type_ids" in sample:
        sample["token_type_ids"] = torch.zeros(2, 16, dtype=torch.long)
    if dynamo:
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
        axes: dict[str, Any] = {"dynamic_shapes": {name: {0: batch, 1: sequence} for name in names}}
    else:
        axes = {"dynamic_axes": {**{name: {0: "batch", 1: "sequence"} for name in names}, "logits": {0: "batch"}}}
    with torch.no_grad(), warnings.catch_warnings():
        # Known-benign tracer notes: transformers' mask padding branch (never taken: mask length == kv length)
        # and the aten::index lowering (indices are non-negative positions).
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            model, (), str(target), kwargs=sample, input_names=names, output_names=["logits"],
            opset_version=opset, dynamo=dynamo, **axes,
        )
    return {"exporter": f"torch.onnx.export(dynamo={dynamo})", "attn_implementation": "eager", "inputs": names,
            "last_layer": last_layer_note(model)}


def optimize_graph(source_file: Path, target: Path, level: str, hf_config, use_gpu: bool) -> dict[str, Any]:
    """ORT transformer optimizer at optimum's levels; returns which operators were fused.

    O1 = ORT basic passes only. O2 = basic passes + the Python transformer fusions (Attention,
    EmbedLayerNorm, SkipLayerNorm, BiasGelu). O3 = O2 + GELU approximation (FastGelu). O4 = O3 +
    fp16 weights/activations with fp32 graph inputs/outputs. ORT's extended passes are applied by
    the session at load instead of baked in here, so the file stays portable across providers.
    """
    optimizer_module = require("onnxruntime.transformers.optimizer", "onnx", "ONNX graph optimization")
    from onnxruntime.transformers.fusion_options import FusionOptions

    hf_type = getattr(hf_config, "model_type", "")
    ort_type = ORT_MODEL_TYPES.get(hf_type)
    only_onnxruntime = level == "O1" or ort_type is None
    if ort_type is None and level != "O1":
        logger.warning("no ORT fusions for model_type %r; %s falls back to ORT's generic passes", hf_type, level)
    options = FusionOptions(ort_type or "bert")
    options.enable_gelu_approximation = level in ("O3", "O4")
    optimizer = optimizer_module.optimize_model(
        str(source_file),
        model_type=ort_type or "bert",
        num_heads=int(getattr(hf_config, "num_attention_heads", 0) or 0),
        hidden_size=int(getattr(hf_config, "hidden_size", 0) or 0),
        optimization_options=options,
        opt_level=1,
        use_gpu=use_gpu,
        only_onnxruntime=only_onnxruntime,
    )
    fused = {name: count for name, count in optimizer.get_fused_operator_statistics().items() if count}
    if level == "O4":
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

        optimizer.convert_float_to_float16(
            keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_EXTRA_BLOCKED_OPS]
        )
    optimizer.save_model_to_file(str(target))
    return {"level": level, "ort_model_type": ort_type, "only_onnxruntime": only_onnxruntime, "fused_operators": fused}




def build_graph(source: ModelSource, config: OnnxExportConfig, target: Path, workdir: Path) -> dict[str, Any]:
    """Export, optimize and quantize into ``target``; return what each step did (for the manifest)."""
    hf_config = source.load_config()
    plain = workdir / "model.onnx"
    details: dict[str, Any] = torch_export(source, hf_config, plain, config.opset, config.dynamo, config.first_token)
    current = plain
    if config.optimize:
        optimized = workdir / f"model_{config.optimize}.onnx"
        details["optimization"] = optimize_graph(current, optimized, config.optimize, hf_config, config.device.startswith("cuda"))
        current = optimized
    if config.quantize:
        details["quantization"] = quantize_graph(source, current, target, config, workdir)
    else:
        shutil.move(str(current), str(target))
    return details


# --------------------------------------------------------------------------- verification


def verify_artifact(source: ModelSource, folder: Path, config: OnnxExportConfig) -> VerificationReport:
    """Score the verification set with the artifact (onnx backend) and torch eager fp32; compare."""
    from crossenc.exporters.verify import ArtifactScorer, default_verification_set, load_verification_file, verify_encoder

    verification_set = (
        load_verification_file(config.verification_file) if config.verification_file else default_verification_set()
    )
    reference = ArtifactScorer(source.path, source, "torch", "eager", config.device, model_kwargs=source.model_kwargs)
    candidate = ArtifactScorer(folder, source, "onnx", config.variant, config.device, {"file_name": config.file_name})
    return verify_encoder(
        reference, candidate, verification_set, config.effective_tolerance(), f"onnx {config.variant}",
        measure_drift=config.quantize is not None,
    )


# --------------------------------------------------------------------------- the verb
def export_onnx(
    model: str | os.PathLike | ModelSource,
    config: OnnxExportConfig | None = None,
    output_dir: str | os.PathLike | None = None,
) -> ExportResult:
    """Export ``model`` per ``config`` into ``output_dir`` (default: the crossenc export cache), verified.

    ``output_dir`` is replaced only by an artifact that passed verification (or whose verification
    was skipped, ``verify=False``: its manifest says ``"verified": false``). One that fails is kept
    at ``<output_dir>.failed`` with the numbers in its manifest, ``output_dir`` is left as it was,
    and the call raises VerificationFailed carrying the report and the ``.failed`` path.
    """
    config = config or OnnxExportConfig()
    require("onnxruntime", "onnx", "ONNX export")
    require("onnx", "onnx", "ONNX export")
    source = as_source(model)
    if output_dir is None:
        from crossenc.exporters.locate import export_cache_dir

        output_dir = export_cache_dir(source, "onnx", config.variant)

    def build(staging: Path) -> tuple[dict[str, Any], VerificationReport | None]:
        with tempfile.TemporaryDirectory(prefix="crossenc-onnx-") as workdir:
            details = build_graph(source, config, staging / config.file_name, Path(workdir))
        details["copied_files"] = copy_support_files(source, staging)
        report = verify_artifact(source, staging, config) if config.verify else None
        manifest = write_manifest(
            staging,
            artifact_format="onnx",
            variant=config.variant,
            source_name=source.name,
            source_revision=source.revision,
            source_dir=source.path,
            export_config={"config": config.to_dict(), "file": config.file_name, **details},
            tools=tool_versions("onnx", "onnxruntime", "onnxscript"),
            verification=report.to_dict() if report else None,
        )
        return manifest, report

    return write_export(
        output_dir, build, f"ONNX export {config.file_name} ({config.variant})",
        "Loosen the tolerance only if these numbers are acceptable for your use.",
    )


def export_for_load(request: LoadRequest) -> Path:
    """The onnx backend's artifact for ``request`` when its model folder has none: a complete, matching export
    in the cache, else a fresh verified one there (``backend_kwargs["export"]`` overrides the variant's recipe)."""
    from crossenc.backends.onnx_backend import instead_of
    from crossenc.exporters.locate import ensure_export, export_cache_dir, load_refusal

    variant = request.variant
    config = config_for_variant(variant, request.device, **dict(request.options.get("export") or {}))
    folder = export_cache_dir(request.source, "onnx", variant)
    manifest = ensure_export(
        folder, config.to_dict(), lambda: export_onnx(request.source, config, output_dir=folder),
        request.flag("allow_unverified"), f"ONNX export ({variant})",
        load_refusal(request, "onnx", instead_of(variant)),
    )
    return folder / manifest["export_config"]["file"]


# --------------------------------------------------------------------------- CLI
def add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``crossenc export onnx MODEL OUT [...]`` (positionals included)."""
    add_common_arguments(parser)
    parser.add_argument("--optimize", choices=OPTIMIZE_LEVELS, default=None,
                        help="ORT graph optimization: O1 basic, O2 +fusions, O3 +GELU approx, O4 +fp16 (CUDA)")
    parser.add_argument("--quantize", nargs="?", const=DEFAULT_QUANTIZE, choices=QUANTIZE_MODES, default=None,
                        help=f"int8 quantization (alone: {DEFAULT_QUANTIZE}, the verified int8 recipe; implies --optimize O2)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (O4 needs cuda)")


def run_onnx(args: argparse.Namespace) -> int:
    """Run the export the arguments describe and print its verification summary (VerificationFailed: the CLI's)."""
    config = OnnxExportConfig(
        opset=args.opset,
        optimize=args.optimize or ("O2" if args.quantize else None),
        quantize=args.quantize,
        calibration_file=args.calibration,
        verification_file=args.verify_file,
        device=args.device,
        verify=not args.no_verify,
    )
    config = dataclasses.replace(config, tolerance=tolerance_from_args(args, config.precision))
    print(export_summary(export_onnx(args.model, config, args.output)))
    return 0
