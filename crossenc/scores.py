"""Score semantics in one place: activation choice, fp32 upcast, softmax, NaN check, ordering."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _import_from_string(dotted_path: str) -> Any:
    module_name, _, attribute = dotted_path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _import_trusted(path: str, trust_remote_code: bool) -> Callable | None:
    if trust_remote_code or path.startswith("torch."):
        return _import_from_string(path)()
    logger.warning(  # sentence-transformers' wording
        f"Activation function path '{path}' is not trusted, using default activation function instead. "
        "Please load the CrossEncoder with `trust_remote_code=True` to allow loading custom activation "
        "functions via the configuration."
    )
    return None


def config_activation_path(config: Any) -> str | None:
    """The activation in ``config.json``: its ``sentence_transformers`` block, else the pre-v4 key."""
    st_block = getattr(config, "sentence_transformers", None)
    if isinstance(st_block, dict) and "activation_fn" in st_block:
        return st_block["activation_fn"]  # may be None: then the default, as sentence-transformers does
    return getattr(config, "sbert_ce_default_activation_function", None)


def resolve_activation(
    explicit: Callable | None, config: Any, saved_path: str | None, num_labels: int, trust_remote_code: bool
) -> Callable:
    """sentence-transformers' order: explicit > ``saved_path`` (its config_sentence_transformers.json)
    > ``config.json`` > Sigmoid for 1 label, else Identity. Saved paths outside ``torch.`` need trust."""
    if explicit is not None:
        if not callable(explicit):
            raise TypeError(f"activation_fn must be callable, got {type(explicit).__name__}")
        return explicit
    for path in (saved_path, config_activation_path(config)):
        if path:
            activation = _import_trusted(path, trust_remote_code)
            if activation is not None:
                return activation
    return torch.nn.Sigmoid() if num_labels == 1 else torch.nn.Identity()


def activation_path(activation: Callable) -> str:
    """Dotted path of an activation, as sentence-transformers stores it."""
    cls = activation if isinstance(activation, type) else type(activation)
    return f"{cls.__module__}.{cls.__qualname__}"


def logits_to_scores(
    logits: np.ndarray, activation: Callable | None, apply_softmax: bool, num_labels: int
) -> torch.Tensor:
    """fp32 logits ``[N, num_labels]`` -> scores ``[N]`` (one label) or ``[N, num_labels]``."""
    if not np.isfinite(logits).all():
        bad = np.flatnonzero(~np.isfinite(logits).all(axis=-1))
        raise FloatingPointError(f"the model produced NaN/inf logits for {len(bad)} pair(s), first at index {bad[0]}")
    scores = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    if activation is not None:
        scores = activation(scores)
    if num_labels == 1 and scores.ndim > 1:
        scores = scores.squeeze(-1)
    if apply_softmax and scores.ndim > 1:
        scores = torch.nn.functional.softmax(scores, dim=1)
    return scores.float()


def rank_order(scores: list[float]) -> list[int]:
    """Indices by descending score; equal scores keep input order."""
    return sorted(range(len(scores)), key=lambda index: -scores[index])
