"""Registry of backends: name -> lazily imported loader. Heavy imports happen only on use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


# name -> "module:function"; each function takes a LoadRequest and returns a Predictor.
BACKENDS: dict[str, str] = {
    "torch": "crossenc.backends.torch_backend:load",
    "onnx": "crossenc.backends.onnx_backend:load",
    "openvino": "crossenc.backends.openvino_backend:load",
    "tensorrt": "crossenc.backends.tensorrt_backend:load",
}

# name -> variants the backend knows (first = default). Used for validation and the bench.
VARIANTS: dict[str, tuple[str, ...]] = {
    "torch": ("sdpa", "eager", "compile", "bf16", "fp16", "int8", "packed", "packed-fp16", "packed-bf16"),
    "onnx": ("plain", "optimized", "int8", "fp16"),
    "openvino": ("fp32", "bf16", "int8"),
    "tensorrt": ("fp16",),
}


def backend_loader(name: str) -> Callable[[LoadRequest], Predictor]:
    """The loader for backend ``name``; ValueError for an unknown name."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
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
