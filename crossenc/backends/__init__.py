"""Backends, each described once in :data:`BACKENDS`: loader, variants (devices, precision), options.

Validation (``check_backend``, ``check_variant``, strict options), the bench, autotune and the
tests all read these declarations; heavy imports happen only when a backend's loader is first used.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossenc.inputs import check_flag
from crossenc.model_source import ModelSource
from crossenc.predictor import Predictor

CPU_BF16 = "cpu-bf16"  # a Variant need: AVX512_BF16 or AMX, when the variant runs on a CPU


@dataclass
class LoadRequest:
    """Everything a backend needs to build a Predictor."""

    source: ModelSource
    config: Any  # transformers PretrainedConfig
    device: str
    variant: str
    max_length: int
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific keyword arguments
    # Makes (or finds in the export cache) a verified artifact when the model folder holds none; the
    # facade's loader (crossenc.loading) sets it, so backends never import the exporters above them.
    exporter: Callable[[LoadRequest], Path] | None = None

    def flag(self, name: str, default: bool = False) -> bool:
        """The True/False option ``name`` (ValueError for anything else, e.g. the string "false")."""
        return check_flag(name, self.options.get(name, default))

    def export_artifact(self, what: str) -> Path:
        """The artifact ``exporter`` makes for this request; ValueError naming ``what`` is missing without one."""
        if self.exporter is None:
            raise ValueError(
                f"{self.source.path} has no {what} and this load has no exporter to make one: load it with "
                f"crossenc.CrossEncoder or crossenc.load_predictor, or export it first (crossenc export ...)"
            )
        return self.exporter(self)


@dataclass(frozen=True)
class Variant:
    """One way a backend runs a model."""

    name: str
    precision: str  # "fp32", "bf16", "fp16", "int8": what scores are computed in
    devices: tuple[str, ...] = ("cpu", "cuda")  # device kinds it runs on
    needs: tuple[str, ...] = ()  # CPU_BF16 (on a CPU only) or importable modules ("torchao")
    family: str = ""  # the code path behind it, where a backend has several (torch: "padded", "packed")
    options: frozenset[str] | None = None  # backend_kwargs it takes, where they differ from the backend's
    options_label: str = ""  # how an unknown-option error names them ("packed-variant")
    bench: bool = True  # measured by `crossenc bench` and autotune wherever it runs

    def runs_on(self, device: str) -> bool:
        """True when this host can run the variant on ``device`` ("cpu", "cuda", "cuda:1")."""
        kind = device.split(":")[0]
        if kind not in self.devices:
            return False
        for need in self.needs:
            if need == CPU_BF16:
                from crossenc.hardware import has_cpu_bf16

                if kind == "cpu" and not has_cpu_bf16():
                    return False
            elif importlib.util.find_spec(need) is None:
                return False
        return True


@dataclass(frozen=True)
class Backend:
    """A backend: its loader (``"module:function"``, taking a LoadRequest), variants (first = default), options."""

    name: str
    loader: str
    variants: tuple[Variant, ...]
    options: frozenset[str]
    requires: str | None = None  # module that must import for the backend to run at all

    @property
    def default(self) -> str:
        return self.variants[0].name

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ValueError(
            f"unknown variant {name!r} for backend {self.name!r}; choose one of {[v.name for v in self.variants]}"
        )

    def installed(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def runnable(self, device: str) -> list[Variant]:
        """The variants this host can run on ``device`` (none when the backend is not installed)."""
        return [variant for variant in self.variants if variant.runs_on(device)] if self.installed() else []

    def known_options(self, variant: str) -> tuple[frozenset[str], str]:
        """(option names, how errors name them) for ``variant`` (the backend's own for an unknown variant)."""
        declared = next((candidate for candidate in self.variants if candidate.name == variant), None)
        if declared is not None and declared.options is not None:
            return declared.options, declared.options_label
        return self.options, f"{self.name} backend"


_TORCH_PACKED_OPTIONS = frozenset(
    {"use_triton", "cuda_graphs", "attention", "windowed_attention", "graph_max_tokens", "graph_max_batch",
     "in_flight", "pin_inputs"}
)


def _packed(name: str, precision: str, **kwargs: Any) -> Variant:
    return Variant(name, precision, family="packed", options=_TORCH_PACKED_OPTIONS, options_label="packed-variant",
                   **kwargs)


# In bench order after the default: `crossenc bench` lists rows in this order.
BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend(
            "torch",
            "crossenc.backends.torch_backend:load",
            (
                Variant("sdpa", "fp32", family="padded"),
                Variant("eager", "fp32", family="padded"),
                Variant("compile", "fp32", family="padded"),
                _packed("packed", "fp32"),
                Variant("fp16", "fp16", devices=("cuda",), family="padded"),
                Variant("bf16", "bf16", needs=(CPU_BF16,), family="padded"),
                Variant("int8", "int8", devices=("cpu",), needs=("torchao",), family="padded"),
                _packed("packed-fp16", "fp16", devices=("cuda",)),
                _packed("packed-bf16", "bf16", needs=(CPU_BF16,), bench=False),
            ),
            options=frozenset({"in_flight", "first_token", "pin_inputs"}),
        ),
        Backend(
            "onnx",
            "crossenc.backends.onnx_backend:load",
            (
                Variant("plain", "fp32"),
                Variant("optimized", "fp32"),
                Variant("int8", "int8", devices=("cpu",)),
                Variant("fp16", "fp16", devices=("cuda",)),
            ),
            options=frozenset({"file_name", "providers", "graph_optimization_level", "intra_op_num_threads",
                               "enable_mem_pattern", "export", "allow_unverified"}),
            requires="onnxruntime",
        ),
        Backend(
            "openvino",
            "crossenc.backends.openvino_backend:load",
            (
                Variant("fp32", "fp32", devices=("cpu",)),
                Variant("bf16", "bf16", devices=("cpu",), needs=(CPU_BF16,)),
                Variant("int8", "int8", devices=("cpu",)),
            ),
            options=frozenset({"file_name", "hint", "num_requests", "inference_precision", "split_batches", "ov_device",
                               "export", "allow_unverified", "ov_config"}),
            requires="openvino",
        ),
    )
}
# Backends the mission names that are not built yet: name -> why, and what to use instead.
NOT_BUILT: dict[str, str] = {
    "tensorrt": (
        "the TensorRT engine backend is not built yet (it needs an NVIDIA GPU to build and verify engines, "
        "which this project's machines lack); on CUDA use backend='torch' variant 'packed-fp16', or "
        "backend='onnx' with backend_kwargs={'providers': ['TensorrtExecutionProvider', 'CUDAExecutionProvider']}"
    ),
}


def check_options(options: dict[str, Any], known: Iterable[str], what: str) -> None:
    """ValueError naming options ``what`` does not know: a misspelt option must not be dropped silently."""
    known = set(known)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; known: {sorted(known)}")


def check_request_options(backend: str, request: LoadRequest) -> None:
    """:func:`check_options` against what ``BACKENDS`` declares for the request's variant."""
    check_options(request.options, *BACKENDS[backend].known_options(request.variant))


def check_backend(name: str) -> str:
    """``name`` if it is a backend (or "auto"); NotImplementedError for one not built, ValueError otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    if name in NOT_BUILT:
        raise NotImplementedError(f"backend {name!r}: {NOT_BUILT[name]}")
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    return name


def check_variant(backend: str, variant: str | None) -> str:
    """Resolve ``None`` to the backend's default variant; ValueError for an unknown one."""
    return BACKENDS[backend].default if variant is None else BACKENDS[backend].variant(variant).name


def backend_loader(name: str) -> Callable[[LoadRequest], Predictor]:
    """The loader of backend ``name`` (no exporter: crossenc.loading adds one); NotImplementedError/ValueError
    for a name that is not a backend."""
    if check_backend(name) == "auto":
        raise ValueError("backend 'auto' is resolved by CrossEncoder (crossenc autotune's choice), not loaded")
    module_name, function_name = BACKENDS[name].loader.split(":")
    return getattr(importlib.import_module(module_name), function_name)
