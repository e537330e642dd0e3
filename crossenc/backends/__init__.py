"""Registry of backends: name -> lazily imported loader. Heavy imports happen only on use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

from crossenc.inputs import check_flag
from crossenc.model_source import ModelSource
from crossenc.predictor import Predictor


@dataclass
class LoadRequest:
    """Everything a backend needs to build a Predictor."""

    source: ModelSource
    config: Any  # transformers PretrainedConfig
    device: str
    variant: str | None
    max_length: int
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific keyword arguments

    def flag(self, name: str, default: bool = False) -> bool:
        """The True/False option ``name`` (ValueError for anything else, e.g. the string "false")."""
        return check_flag(name, self.options.get(name, default))


def check_options(options: dict[str, Any], known: Iterable[str], what: str) -> None:
    """ValueError naming options ``what`` does not know: a misspelt option must not be dropped silently."""
    known = set(known)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; known: {sorted(known)}")


# name -> "module:function"; each function takes a LoadRequest and returns a Predictor.
BACKENDS: dict[str, str] = {
    "torch": "crossenc.backends.torch_backend:load",
    "onnx": "crossenc.backends.onnx_backend:load",
    "openvino": "crossenc.backends.openvino_backend:load",
}
# Backends the mission names that are not built yet: name -> why, and what to use instead.
NOT_BUILT: dict[str, str] = {
    "tensorrt": (
        "the TensorRT engine backend is not built yet (it needs an NVIDIA GPU to build and verify engines, "
        "which this project's machines lack); on CUDA use backend='torch' variant 'packed-fp16', or "
        "backend='onnx' with backend_kwargs={'providers': ['TensorrtExecutionProvider', 'CUDAExecutionProvider']}"
    ),
}

# name -> variants the backend knows (first = default). Used for validation and the bench.
VARIANTS: dict[str, tuple[str, ...]] = {
    "torch": ("sdpa", "eager", "compile", "bf16", "fp16", "int8", "packed", "packed-fp16", "packed-bf16"),
    "onnx": ("plain", "optimized", "int8", "fp16"),
    "openvino": ("fp32", "bf16", "int8"),
}


def check_backend(name: str) -> str:
    """``name`` if it is a backend (or "auto"); NotImplementedError for one not built, ValueError otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    if name in NOT_BUILT:
        raise NotImplementedError(f"backend {name!r}: {NOT_BUILT[name]}")
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    return name


def backend_loader(name: str) -> Callable[[LoadRequest], Predictor]:
    """The loader for backend ``name``; NotImplementedError/ValueError for one that is not a backend."""
    if check_backend(name) == "auto":
        raise ValueError("backend 'auto' is resolved by CrossEncoder (crossenc autotune's choice), not loaded")
    module_name, function_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def check_variant(backend: str, variant: str | None) -> str:
    """Resolve ``None`` to the backend's default variant; ValueError for an unknown one."""
    known = VARIANTS[backend]
    if variant is None:
        return known[0]
    if variant not in known:
        raise ValueError(f"unknown variant {variant!r} for backend {backend!r}; choose one of {list(known)}")
    return variant
