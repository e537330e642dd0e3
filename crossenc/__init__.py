"""crossenc: cross-encoder rerankers as fast as the hardware allows, with the same answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CrossEncoder", "load_predictor", "__version__"]

if TYPE_CHECKING:
    from crossenc.cross_encoder import CrossEncoder
    from crossenc.predictor import Predictor


def __getattr__(name: str) -> Any:
    if name == "CrossEncoder":  # imported lazily so `import crossenc` stays light
        from crossenc.cross_encoder import CrossEncoder

        return CrossEncoder
    raise AttributeError(f"module 'crossenc' has no attribute {name!r}")


def load_predictor(
    model_name_or_path: str,
    backend: str = "torch",
    variant: str | None = None,
    device: str = "cpu",
    max_length: int | None = None,
    **options: Any,
) -> "Predictor":
    """Load only the backend predictor (token arrays in, fp32 logits out) for a checkpoint folder."""
    from crossenc.loading import load_predictor as load

    return load(model_name_or_path, backend, variant, device, max_length, **options)
