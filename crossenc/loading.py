"""Load a predictor: the backend's declared loader, given the exporter that makes its artifact on first use.

A backend runs artifacts and never imports the exporters above it; where a model folder holds no
artifact for the variant (ONNX file, OpenVINO IR), the exporter wired in here makes a verified one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crossenc import backends
from crossenc.backends import LoadRequest, check_variant
from crossenc.model_source import ModelSource, default_max_length, resolve_model
from crossenc.predictor import Predictor


def _export_onnx(request: LoadRequest) -> Path:
    from crossenc.exporters.onnx import export_for_load

    return export_for_load(request)


def _export_openvino(request: LoadRequest) -> Path:
    from crossenc.exporters.openvino import export_for_load

    return export_for_load(request)


# backend -> what makes its artifact when a model folder has none
EXPORTERS: dict[str, Callable[[LoadRequest], Path]] = {"onnx": _export_onnx, "openvino": _export_openvino}


def backend_loader(name: str) -> Callable[[LoadRequest], Predictor]:
    """The loader of backend ``name`` with its exporter wired in (NotImplementedError/ValueError for a non-backend)."""
    load = backends.backend_loader(name)
    exporter = EXPORTERS.get(name)
    if exporter is None:
        return load
    return lambda request: load(dataclasses.replace(request, exporter=request.exporter or exporter))


def load_predictor(
    model_name_or_path: str,
    backend: str = "torch",
    variant: str | None = None,
    device: str = "cpu",
    max_length: int | None = None,
    **options: Any,
) -> Predictor:
    """Load only the backend predictor (token arrays in, fp32 logits out) for a checkpoint folder."""
    source = ModelSource(path=resolve_model(model_name_or_path), name=str(model_name_or_path))
    config = source.load_config()
    if max_length is None:
        max_length = default_max_length(source.load_tokenizer(), config)
    request = LoadRequest(source, config, device, check_variant(backend, variant), max_length, options)
    return backend_loader(backend)(request)
