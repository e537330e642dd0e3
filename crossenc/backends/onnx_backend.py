"""ONNX Runtime backend: run an ``.onnx`` file from the model folder, or a verified export of it.

Which file runs (in order): ``options["file_name"]``; the file named by a crossenc export
manifest in the folder; a file at a known layout for the variant (``model.onnx``,
``onnx/model.onnx``, ``onnx/model_O3.onnx``, ``onnx/model_qint8_avx512_vnni.onnx``, ...);
else a verified export made once into the export cache (``LoadRequest.exporter``, set by crossenc.loading).

Options (``CrossEncoder(..., backend_kwargs={...})``): ``file_name``, ``providers``,
``graph_optimization_level`` ("disable" | "basic" | "extended" | "all"), ``intra_op_num_threads``,
``enable_mem_pattern``, ``export`` (dict of OnnxExportConfig fields for a cache export),
``allow_unverified`` (load an export whose manifest says it failed or skipped verification; by
default such an artifact, in the folder or in the cache, raises VerificationFailed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from crossenc.backends import BACKENDS, LoadRequest, check_request_options
from crossenc.errors import ArtifactIntegrityError
from crossenc.manifest import check_manifest, read_manifest
from crossenc.hardware import physical_cores
from crossenc.optional import require
from crossenc.predictor import PredictorInfo, TokenBatch

logger = logging.getLogger(__name__)

# Where sentence-transformers / optimum / crossenc put each variant's file, most specific first.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "plain": ("model.onnx", "onnx/model.onnx"),
    "optimized": ("model_O2.onnx", "onnx/model_O2.onnx", "model_O3.onnx", "onnx/model_O3.onnx", "model_O1.onnx",
                  "onnx/model_O1.onnx"),
    "int8": ("model_qint8.onnx", "onnx/model_qint8_avx512_vnni.onnx", "onnx/model_qint8_avx512.onnx",
             "onnx/model_qint8_avx2.onnx", "onnx/model_qint8_arm64.onnx", "onnx/model_quint8_avx2.onnx"),
    "fp16": ("model_O4.onnx", "onnx/model_O4.onnx", "model_fp16.onnx", "onnx/model_fp16.onnx"),
}
# Default provider order per device kind. TensorRT is opt-in (providers=[...]): its engines are
# rebuilt for every new input shape, a trap for variable-length reranking.
PROVIDER_PREFERENCE = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
ORT_INPUT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
VARIANT_NAMES = frozenset(variant.name for variant in BACKENDS["onnx"].variants)


def onnx_files(folder: Path) -> list[str]:
    """Every ``.onnx`` file under ``folder`` as relative posix paths (what ``file_name`` may name)."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.onnx") if path.is_file())


def find_onnx_file(folder: Path, variant: str, file_name: str | None) -> Path | None:
    """The ONNX file to run from ``folder``; None when the folder holds none for ``variant``."""
    if file_name is not None:
        path = folder / file_name
        if not path.is_file():
            found = onnx_files(folder)
            listing = ", ".join(found) if found else "no .onnx files"
            raise ValueError(f"file_name={file_name!r} not found in {folder}; it has: {listing}")
        return path
    manifest = read_manifest(folder)
    if manifest and manifest.get("format") == "onnx" and manifest.get("variant") == variant:
        return folder / manifest["export_config"]["file"]
    for relative in LAYOUTS[variant]:
        if (folder / relative).is_file():
            return folder / relative
    return None


def precision_from_name(file_name: str, fallback: str) -> str:
    """Guess a file's precision from sentence-transformers / optimum naming (qint8, O4, fp16)."""
    name = Path(file_name).name.lower()
    if "int8" in name:
        return "int8"
    if "fp16" in name or "_o4" in name:
        return "fp16"
    return "fp32" if name.startswith("model") else fallback


def _resolve_providers(device: str, requested: list[str] | None) -> list[Any]:
    ort = require("onnxruntime", "onnx", "the ONNX backend")
    available = set(ort.get_available_providers())
    if requested is not None:
        names = [p[0] if isinstance(p, (tuple, list)) else p for p in requested]
        missing = [name for name in names if name not in available]
        if missing:
            raise ValueError(f"providers {missing} are not available in this onnxruntime; available: {sorted(available)}")
        return list(requested)
    kind, _, index = device.partition(":")
    chosen: list[Any] = [name for name in PROVIDER_PREFERENCE[kind] if name in available]
    if kind == "cuda":
        if "CUDAExecutionProvider" not in chosen:
            raise ValueError(
                f"device {device!r} needs onnxruntime's CUDAExecutionProvider; this build has {sorted(available)}. "
                "Install onnxruntime-gpu ('crossenc[gpu]') or use device='cpu'."
            )
        chosen[0] = ("CUDAExecutionProvider", {"device_id": int(index or 0)})
    return chosen


def session_options(options: dict[str, Any]):
    """SessionOptions: one intra-op thread per physical core, full graph optimization, mem patterns."""
    ort = require("onnxruntime", "onnx", "the ONNX backend")
    level = options.get("graph_optimization_level", "all")
    if level not in OPTIMIZATION_LEVELS:
        raise ValueError(f"graph_optimization_level={level!r}; choose one of {list(OPTIMIZATION_LEVELS)}")
    session_opts = ort.SessionOptions()
    session_opts.intra_op_num_threads = int(options.get("intra_op_num_threads") or physical_cores())
    session_opts.inter_op_num_threads = 1
    session_opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[level])
    session_opts.enable_mem_pattern = bool(options.get("enable_mem_pattern", True))
    session_opts.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    return session_opts


def create_session(path: Path, options: dict[str, Any], providers: list[Any]):
    """An InferenceSession for ``path``; a file ORT cannot parse raises ValueError naming it."""
    ort = require("onnxruntime", "onnx", "the ONNX backend")
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(options), providers=providers)
    except Exception as error:  # ORT raises its own pybind types (InvalidProtobuf, Fail, InvalidGraph, ...)
        if not type(error).__module__.startswith("onnxruntime"):
            raise
        raise ValueError(
            f"{path} could not be loaded by ONNX Runtime ({type(error).__name__}: {error}). If the file is corrupt "
            "or truncated, re-export it: crossenc export onnx MODEL OUT"
        ) from error


class OnnxPredictor:
    """Runs an ORT session on padded token batches; sends only the inputs the graph declares."""

    def __init__(self, session, info: PredictorInfo, device: str) -> None:
        self.session = session
        self.info = info
        self.input_types = {arg.name: ORT_INPUT_TYPES.get(arg.type, np.int64) for arg in session.get_inputs()}
        unknown = set(self.input_types) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            raise ValueError(
                f"{info.details.get('file')}: graph inputs {sorted(unknown)} are not token inputs; crossenc feeds "
                "input_ids, attention_mask and token_type_ids only"
            )
        self.output_name = next((o.name for o in session.get_outputs() if o.name == "logits"), session.get_outputs()[0].name)
        self.device = device
        # IO binding: inputs copied to the GPU once, logits allocated there by ORT, no per-node host syncs.
        self.use_io_binding = device.startswith("cuda") and "CUDAExecutionProvider" in session.get_providers()

    def _feed(self, batch: TokenBatch) -> dict[str, np.ndarray]:
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in self.input_types:
            arrays["token_type_ids"] = (
                batch.token_type_ids if batch.token_type_ids is not None else np.zeros_like(batch.input_ids)
            )
        return {name: np.ascontiguousarray(arrays[name], dtype=dtype) for name, dtype in self.input_types.items()}

    def _run_bound(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """CUDA: bind inputs once, let ORT allocate the output on the device, copy back once."""
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        device_id = int(self.device.partition(":")[2] or 0)
        binding.bind_output(self.output_name, "cuda", device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def predict_logits(self, batch: TokenBatch) -> np.ndarray:
        feed = self._feed(batch)
        if self.use_io_binding:
            logits = self._run_bound(feed)
        else:
            logits = self.session.run([self.output_name], feed)[0]
        return np.asarray(logits, dtype=np.float32).reshape(batch.batch_size, -1)


def _graph_opset(path: Path) -> int | None:
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)


def _check_request(request: LoadRequest, variant: str) -> None:
    check_request_options("onnx", request)
    on_cuda = request.device.startswith("cuda")
    if variant == "fp16" and not on_cuda and "file_name" not in request.options:
        raise ValueError("variant 'fp16' (O4) needs a CUDA device; on CPU use 'optimized' or 'int8'")
    if variant == "int8" and on_cuda:
        raise ValueError("variant 'int8' is CPU-only (ORT's int8 kernels are CPU kernels); on CUDA use 'fp16'")


def _check_exportable(folder: Path, variant: str) -> None:
    """A folder with ONNX files but no weights cannot be exported: say which files it has instead."""
    if any(path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern)):
        return
    manifest = read_manifest(folder)
    exported = manifest.get("variant") if manifest and manifest.get("format") == "onnx" else None
    hint = f"; it is a crossenc export of variant {exported!r}: pass variant={exported!r}" if exported else ""
    found = ", ".join(onnx_files(folder)) or "none"
    raise ValueError(
        f"{folder} has no ONNX file for variant {variant!r} and no weights to export one{hint}. ONNX files "
        f"there: {found}; choose one with backend_kwargs={{'file_name': ...}}"
    )


def _info(request: LoadRequest, variant: str, path: Path, manifest: dict | None, session) -> PredictorInfo:
    ort = require("onnxruntime", "onnx", "the ONNX backend")
    if manifest and manifest.get("format") == "onnx":
        exported = manifest.get("variant", "")
        precision = BACKENDS["onnx"].variant(exported).precision if exported in VARIANT_NAMES else "fp32"
        opset = manifest.get("export_config", {}).get("config", {}).get("opset")
    else:
        precision = precision_from_name(path.name, BACKENDS["onnx"].variant(variant).precision)
        opset = _graph_opset(path)
    details: dict[str, Any] = {
        "providers": session.get_providers(),
        "file": str(path),
        "opset": opset,
        "onnxruntime": ort.__version__,
        "inputs": [arg.name for arg in session.get_inputs()],
        "threads": session.get_session_options().intra_op_num_threads,
        "verified": manifest.get("verified") if manifest else None,
    }
    return PredictorInfo(
        backend="onnx",
        variant=variant,
        device=request.device,
        precision=precision,
        max_length=request.max_length,
        num_labels=int(request.config.num_labels),
        is_padded=True,
        thread_safe=True,  # InferenceSession.run may be called from several threads at once
        details=details,
    )


def instead_of(variant: str) -> str:
    """What to load instead of an ONNX export of ``variant`` that failed verification (every refusal says it)."""
    return "variant='optimized' or 'plain'" if variant in ("int8", "fp16") else "backend='torch'"


def load(request: LoadRequest) -> OnnxPredictor:
    """Find (or export and verify) the ONNX file for ``request.variant`` and open an ORT session on it."""
    require("onnxruntime", "onnx", "the ONNX backend")
    variant = request.variant
    _check_request(request, variant)
    providers = _resolve_providers(request.device, request.options.get("providers"))
    folder = request.source.path
    path = find_onnx_file(folder, variant, request.options.get("file_name"))
    if path is None:
        _check_exportable(folder, variant)
        path = request.export_artifact(f"ONNX file for variant {variant!r}")  # crossenc.exporters.onnx.export_for_load
        folder = path.parent
    if not path.is_file():
        raise ArtifactIntegrityError(f"{path} is named by the manifest in {folder} but missing; re-export the model")
    remedy = f"load its source checkpoint with {instead_of(variant)} instead, or re-export it"
    manifest = (check_manifest(folder, allow_unverified=request.flag("allow_unverified"), remedy=remedy)
                if read_manifest(folder) is not None else None)
    if manifest is not None and manifest.get("format") != "onnx":
        manifest = None
    session = create_session(path, request.options, providers)
    return OnnxPredictor(session, _info(request, variant, path, manifest, session), request.device)
