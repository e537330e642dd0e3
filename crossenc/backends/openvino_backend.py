"""OpenVINO backend: compile an IR (crossenc export or sentence-transformers layout) for the CPU.

Which IR runs (in order): ``options["file_name"]``; an IR of the variant's kind at a known
layout (``openvino_model.xml``, ``openvino/openvino_model.xml``,
``openvino/openvino_model_qint8_quantized.xml``; int8 = the graph has FakeQuantize nodes); else
a verified export made once into the export cache (``LoadRequest.exporter``, set by crossenc.loading):
the fp32 IR serves both the fp32 and bf16 variants.

Variants set INFERENCE_PRECISION_HINT explicitly (this CPU's default is bf16): fp32 -> f32;
bf16 -> bf16 with LayerNorm, residual adds and scalings kept in f32 (demo, 10 held-out queries:
Spearman 0.9982 -> 0.9993, top-10 0.94 -> 0.97, ~5 % slower, within noise); int8 -> bf16 for
the ops NNCF left in float (~40 % faster than f32 on this CPU, same ranking quality on the demo;
``inference_precision="f32"`` overrides).

PERFORMANCE_HINT THROUGHPUT (default) gives one stream per core here, and one request runs on
one stream: ``predict_logits`` therefore splits a batch across the streams (``split_batches``,
+10-30 % on 2 shared cores) and ``predict_many`` keeps one batch in flight per stream.

Options (``CrossEncoder(..., backend_kwargs={...})``): ``file_name``, ``hint`` ("throughput" |
"latency"), ``num_requests`` (infer requests in flight), ``inference_precision`` ("f32" | "bf16"),
``split_batches`` (run one batch as several requests), ``ov_device`` ("CPU" | "GPU"), ``export``
(dict of OpenVINOExportConfig fields for a cache export), ``allow_unverified`` (load an export whose
manifest says it failed or skipped verification; by default that raises VerificationFailed).
"""

from __future__ import annotations

import logging
import math
import warnings
import xml.etree.ElementTree as ElementTree
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from crossenc.backends import LoadRequest, check_request_options
from crossenc.errors import ArtifactIntegrityError, UnverifiedArtifactWarning
from crossenc.manifest import MANIFEST_NAME, check_manifest
from crossenc.hardware import cpu_flags, has_cpu_bf16, physical_cores
from crossenc.optional import require
from crossenc.predictor import PredictorInfo, TokenBatch

logger = logging.getLogger(__name__)

HINTS = {"throughput": "THROUGHPUT", "latency": "LATENCY"}
# Where crossenc / sentence-transformers / optimum put each kind of IR, most specific first.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "fp32": ("openvino_model.xml", "openvino/openvino_model.xml"),
    "int8": ("openvino_model.xml", "openvino/openvino_model_qint8_quantized.xml", "openvino/openvino_model_int8.xml"),
}
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "bf16"}
# bf16 inference keeps these in f32: the residual stream and LayerNorm (as torch autocast does).
PRECISE_OP_TYPES = frozenset({"MVN", "Add", "Multiply"})
INPUT_TYPES = {"i64": np.int64, "i32": np.int32}
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
RE_EXPORT = {"int8": "re-export it with other int8 settings (--keep-float, --calibration)", "fp32": "re-export it"}
MIN_ROWS_PER_SPLIT = 4  # split_batches: smaller pieces cost more in overhead than they gain


# --------------------------------------------------------------------------- finding the IR
def ir_files(folder: Path) -> list[str]:
    """Every ``.xml`` IR under ``folder`` as relative posix paths (what ``file_name`` may name)."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*.xml") if path.is_file())


def ir_kind(xml_path: Path) -> str:
    """'int8' for a graph with FakeQuantize nodes (NNCF/optimum static int8), else 'fp32'."""
    with open(xml_path, "rb") as handle:
        return "int8" if b'type="FakeQuantize"' in handle.read() else "fp32"


def variant_kind(variant: str) -> str:
    return "int8" if variant == "int8" else "fp32"


def check_kind(xml_path: Path, variant: str) -> None:
    """A named IR must match the variant: an int8 graph does not run as 'fp32' and vice versa."""
    kind = ir_kind(xml_path)
    # the path follows words naming the file: a message with its paths stripped (support table) still says what
    if kind == "int8" and variant != "int8":
        raise ValueError(f"the OpenVINO IR {xml_path} is an int8 (FakeQuantize) IR; load it with variant='int8'")
    if kind != "int8" and variant == "int8":
        raise ValueError(
            f"the OpenVINO IR {xml_path} is not quantized (no FakeQuantize nodes), so it cannot run as variant "
            "'int8'; load it with variant='fp32' or 'bf16', or make an int8 IR with "
            "crossenc export openvino MODEL OUT --quantize int8"
        )


def find_ir(folder: Path, variant: str, file_name: str | None) -> Path | None:
    """The IR to run from ``folder``; None when the folder holds none of the variant's kind."""
    if file_name is not None:
        path = folder / file_name
        if not path.is_file() or path.suffix != ".xml":
            found = ", ".join(ir_files(folder)) or "no .xml files"
            raise ValueError(f"file_name={file_name!r} is not an IR (.xml) in {folder}; it has: {found}")
        check_kind(path, variant)
        return path
    kind = variant_kind(variant)
    for relative in LAYOUTS[kind]:
        path = folder / relative
        if path.is_file() and ir_kind(path) == kind:
            return path
    return None


def _check_exportable(folder: Path, variant: str) -> None:
    """A folder with IRs but no weights cannot be exported: say which IRs it has instead."""
    weights = [path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern)]
    if any(not path.with_suffix(".xml").exists() for path in weights):  # an IR's .bin is not a checkpoint
        return
    found = ", ".join(f"{name} ({ir_kind(folder / name)})" for name in ir_files(folder)) or "none"
    raise ValueError(
        f"{folder} has no {variant_kind(variant)} IR for variant {variant!r} and no weights to export one. IRs there: "
        f"{found}; choose one with backend_kwargs={{'file_name': ...}} and the matching variant"
    )


def locate_ir(request: LoadRequest, variant: str) -> Path:
    folder = request.source.path
    path = find_ir(folder, variant, request.options.get("file_name"))
    if path is None:
        _check_exportable(folder, variant)
        path = request.export_artifact(f"{variant_kind(variant)} IR")  # crossenc.exporters.openvino.export_for_load
    return path


# --------------------------------------------------------------------------- reading and compiling
def instead_of(variant: str) -> str:
    """What to load instead of an IR for ``variant`` that failed verification (every refusal says it)."""
    return "variant='bf16' or 'fp32'" if variant_kind(variant) == "int8" else "backend='torch'"


def _unverified_remedy(variant: str) -> str:
    return f"load its source checkpoint with {instead_of(variant)} instead, or {RE_EXPORT[variant_kind(variant)]}"


def check_integrity(xml_path: Path, root: Path, variant: str, allow_unverified: bool = False) -> dict[str, Any] | None:
    """Hash-check the IR against a crossenc manifest beside it (or at the model root), if there is one;
    an unverified one raises VerificationFailed unless ``allow_unverified``."""
    for folder in (xml_path.parent, root):
        if (folder / MANIFEST_NAME).is_file():
            relative = [path.relative_to(folder).as_posix() for path in (xml_path, xml_path.with_suffix(".bin"))]
            manifest = check_manifest(folder, files=relative, allow_unverified=allow_unverified,
                                      remedy=_unverified_remedy(variant))
            _warn_bf16(manifest, variant, folder)
            return manifest
    return None


def _warn_bf16(manifest: dict[str, Any] | None, variant: str, folder: Path) -> None:
    report = ((manifest or {}).get("verification") or {}).get("bf16_inference")
    if variant == "bf16" and report and not report.get("passed"):
        warnings.warn(
            f"{folder}: bf16 inference missed its tolerance at export ({'; '.join(report.get('failures', []))}; "
            f"spearman {report.get('spearman', float('nan')):.4f}); use variant='fp32' where that matters",
            UnverifiedArtifactWarning,
            stacklevel=4,
        )


def parse_ir(xml_path: Path) -> ElementTree.ElementTree:
    """Parse the IR's XML; ValueError naming the file when it is not an OpenVINO IR."""
    try:
        tree = ElementTree.parse(xml_path)
    except ElementTree.ParseError as error:
        raise ValueError(f"{xml_path} is not valid XML ({error}); the IR is corrupt: re-export the model") from None
    if tree.getroot().tag != "net" or tree.getroot().find("layers") is None:
        raise ValueError(f"{xml_path} is XML but not an OpenVINO IR (no <net><layers>); re-export the model")
    return tree


def mark_precise(tree: ElementTree.ElementTree, op_types: frozenset[str] = PRECISE_OP_TYPES) -> int:
    """Tag layers of ``op_types`` with OpenVINO's ``precise`` attribute: low-precision inference keeps them f32.

    Python cannot attach that runtime attribute to a node, but the IR reader understands it.
    """
    marked = 0
    for layer in tree.getroot().find("layers"):
        if layer.get("type") in op_types:
            rt_info = layer.find("rt_info")
            if rt_info is None:
                rt_info = ElementTree.Element("rt_info")
                layer.insert(0, rt_info)
            ElementTree.SubElement(rt_info, "attribute", {"name": "precise", "version": "0"})
            marked += 1
    return marked


def read_ir(core, xml_path: Path, precise: bool) -> Any:
    """An ov.Model from ``xml_path``; with ``precise``, LayerNorm/residual ops are tagged to stay f32."""
    ov = require("openvino", "openvino", "the OpenVINO backend")
    bin_path = xml_path.with_suffix(".bin")
    tree = parse_ir(xml_path)
    try:
        if not precise:
            return core.read_model(str(xml_path))
        mark_precise(tree)
        weights = np.fromfile(bin_path, dtype=np.uint8) if bin_path.exists() else np.zeros(0, np.uint8)
        return core.read_model(ElementTree.tostring(tree.getroot()), ov.Tensor(weights))
    except RuntimeError as error:
        detail = str(error).strip().splitlines()
        reason = next((line for line in reversed(detail) if line.strip()), "unknown error")
        raise ValueError(
            f"OpenVINO could not read {xml_path} with weights {bin_path} ({reason}); the IR is corrupt or "
            "truncated: re-export it (crossenc export openvino MODEL OUT)"
        ) from None


def _resolve_device(core, request: LoadRequest) -> str:
    if request.device.startswith("cuda"):
        raise ValueError(
            f"device {request.device!r}: OpenVINO does not run on CUDA devices; use device='cpu' (an Intel GPU is "
            "chosen with backend_kwargs={'ov_device': 'GPU'})"
        )
    ov_device = str(request.options.get("ov_device", "CPU")).upper()
    if ov_device.split(".")[0] not in {device.split(".")[0] for device in core.available_devices}:
        raise ValueError(f"ov_device={ov_device!r} is not available; OpenVINO sees {core.available_devices}")
    return ov_device


def compile_config(request: LoadRequest, variant: str, ov_device: str) -> dict[str, str]:
    """PERFORMANCE_HINT and an explicit INFERENCE_PRECISION_HINT for the variant."""
    hint = str(request.options.get("hint", "throughput")).lower()
    if hint not in HINTS:
        raise ValueError(f"hint={hint!r}; choose one of {list(HINTS)}")
    precision = str(request.options.get("inference_precision", INFERENCE_PRECISION[variant]))
    if precision not in ("f32", "bf16", "f16"):
        raise ValueError(f"inference_precision={precision!r}; choose 'f32' or 'bf16' (CPU), 'f16' (GPU)")
    if variant == "bf16" and (ov_device != "CPU" or not has_cpu_bf16()):
        raise ValueError(f"variant 'bf16' needs a CPU with AVX512_BF16 or AMX (ov_device={ov_device!r}): use 'fp32'")
    if precision == "bf16" and "inference_precision" not in request.options:  # int8's float ops: best available
        precision = "f16" if ov_device != "CPU" else "bf16" if has_cpu_bf16() else "f32"
    config = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_PRECISION_HINT": precision}
    if request.options.get("num_requests"):
        config["PERFORMANCE_HINT_NUM_REQUESTS"] = str(int(request.options["num_requests"]))
    ov_config = request.options.get("ov_config") or {}
    if not isinstance(ov_config, dict):
        raise ValueError(f"ov_config must be a dict of OpenVINO properties, got {type(ov_config).__name__}")
    if (ov_device == "CPU" and precision != "f32" and _amx_decoder(request.config)
            and not {"NUM_STREAMS", "INFERENCE_NUM_THREADS"} & set(map(str, ov_config))):
        # one thread per stream kills the process with SIGFPE in compile_model (docs/openvino-amx-decoders.md)
        cores = physical_cores()
        if cores >= 2:
            config["NUM_STREAMS"] = str(cores // 2)
        else:  # no stream can have two threads
            config["INFERENCE_PRECISION_HINT"] = "f32"
    return {**config, **{str(key): str(value) for key, value in ov_config.items()}}  # the user's properties win


def _amx_decoder(config: Any) -> bool:
    """A Llama-style decoder (grouped key/value heads: Qwen3, Qwen2, Llama, Mistral, ...) on a CPU with AMX,
    where OpenVINO 2026.4's bf16 kernels for it divide by zero when a stream has a single thread."""
    return hasattr(config, "num_key_value_heads") and "amx_bf16" in cpu_flags()


# --------------------------------------------------------------------------- the predictor
class OpenVINOPredictor:
    """Runs a compiled IR on padded token batches; sends only the inputs the graph declares.

    Every call runs on infer requests of its own, so calls from several threads may overlap.
    ``predict_many`` keeps ``num_requests`` batches in flight (one per stream).
    """

    def __init__(self, compiled, info: PredictorInfo, num_requests: int, split_batches: bool) -> None:
        self.compiled = compiled
        self.info = info
        self.num_requests = max(1, num_requests)
        self.split_batches = split_batches and self.num_requests > 1
        self.input_types: dict[str, Any] = {}
        for port in compiled.inputs:
            name = port.get_any_name()
            if name not in TOKEN_INPUTS:
                raise ValueError(f"{info.details.get('file')}: graph input {name!r} is not one of {TOKEN_INPUTS}")
            self.input_types[name] = INPUT_TYPES.get(port.get_element_type().get_type_name(), np.int64)
        self.output = next((port for port in compiled.outputs if "logits" in port.get_names()), compiled.outputs[0])

    def _feed(self, batch: TokenBatch) -> dict[str, np.ndarray]:
        arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                  "token_type_ids": batch.token_type_ids}
        if arrays["token_type_ids"] is None:
            arrays["token_type_ids"] = np.zeros_like(batch.input_ids)
        return {name: np.ascontiguousarray(arrays[name], dtype=dtype) for name, dtype in self.input_types.items()}

    def _logits(self, request, rows: int) -> np.ndarray:
        return np.array(request.get_tensor(self.output).data, dtype=np.float32).reshape(rows, -1)

    def predict_logits(self, batch: TokenBatch) -> np.ndarray:
        if self.split_batches and batch.batch_size >= 2 * MIN_ROWS_PER_SPLIT:
            return np.concatenate(list(self.predict_many(split_batch(batch, self.num_requests))))
        request = self.compiled.create_infer_request()
        request.infer(self._feed(batch))
        return self._logits(request, batch.batch_size)

    def predict_many(self, batches: Iterable[TokenBatch]) -> Iterator[np.ndarray]:
        """Logits of each batch, in submission order, with up to ``num_requests`` batches running at once.

        ``batches`` is consumed lazily: the next batch is built while earlier ones run. Requests are
        started and awaited from this thread only (no completion callbacks): a Python callback on an
        OpenVINO worker thread can run the garbage collector there, and collecting another compiled
        model from that thread aborts the process ("Resource deadlock avoided").
        """
        idle = [self.compiled.create_infer_request() for _ in range(self.num_requests)]
        in_flight: deque[tuple[Any, int]] = deque()
        try:
            for batch in batches:
                if not idle:
                    request, rows = in_flight.popleft()
                    request.wait()
                    idle.append(request)
                    yield self._logits(request, rows)
                request = idle.pop()
                request.start_async(self._feed(batch))
                in_flight.append((request, batch.batch_size))
            while in_flight:
                request, rows = in_flight.popleft()
                request.wait()
                yield self._logits(request, rows)
        finally:
            for request, _ in in_flight:
                request.wait()


def split_batch(batch: TokenBatch, parts: int) -> list[TokenBatch]:
    """``batch`` cut into up to ``parts`` row ranges, each trimmed to its own longest row."""
    rows_per_part = max(MIN_ROWS_PER_SPLIT, math.ceil(batch.batch_size / parts))
    pieces = []
    for start in range(0, batch.batch_size, rows_per_part):
        rows = slice(start, start + rows_per_part)
        width = int(batch.lengths[rows].max())
        type_ids = batch.token_type_ids[rows, :width] if batch.token_type_ids is not None else None
        pieces.append(TokenBatch(batch.input_ids[rows, :width], batch.attention_mask[rows, :width], type_ids,
                                 batch.lengths[rows]))
    return pieces


# --------------------------------------------------------------------------- the loader
def _check_request(request: LoadRequest, variant: str) -> None:
    check_request_options("openvino", request)
    if variant not in INFERENCE_PRECISION:
        raise ValueError(f"unknown openvino variant {variant!r}; choose one of {list(INFERENCE_PRECISION)}")


def load(request: LoadRequest) -> OpenVINOPredictor:
    """Find (or export and verify) the IR for ``request.variant`` and compile it."""
    ov = require("openvino", "openvino", "the OpenVINO backend")
    variant = request.variant
    _check_request(request, variant)
    core = ov.Core()
    ov_device = _resolve_device(core, request)
    config = compile_config(request, variant, ov_device)
    xml_path = locate_ir(request, variant)
    if not xml_path.is_file():
        raise ArtifactIntegrityError(f"{xml_path} is missing; re-export the model")
    manifest = check_integrity(xml_path, request.source.path, variant, request.flag("allow_unverified"))
    precise = variant != "int8" and config["INFERENCE_PRECISION_HINT"] != "f32"  # int8: marking costs speed
    model = read_ir(core, xml_path, precise=precise)
    try:
        compiled = core.compile_model(model, ov_device, config)
    except RuntimeError as error:
        raise ValueError(f"OpenVINO could not compile {xml_path} for {ov_device}: {error}") from None
    num_requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    # THROUGHPUT runs each request on one stream (one core here): a lone batch is split across streams.
    split = bool(request.options.get("split_batches", config["PERFORMANCE_HINT"] == "THROUGHPUT"))
    details: dict[str, Any] = {
        "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        "hint": config["PERFORMANCE_HINT"].lower(),
        "num_requests": num_requests,
        "split_batches": split,
        "file": str(xml_path),
        "ov_device": ov_device,
        "openvino": ov.__version__,
        "inputs": [port.get_any_name() for port in compiled.inputs],
        "verified": manifest.get("verified") if manifest else None,
    }
    if ov_device == "CPU":
        details["threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        details["streams"] = int(compiled.get_property("NUM_STREAMS"))
    info = PredictorInfo(
        backend="openvino",
        variant=variant,
        device=request.device,
        precision=variant,
        max_length=request.max_length,
        num_labels=int(request.config.num_labels),
        is_padded=True,
        thread_safe=True,  # every call creates its own infer request(s)
        details=details,
    )
    return OpenVINOPredictor(compiled, info, num_requests, split)
