"""crossenc: cross-encoder rerankers as fast as the hardware allows, with the same answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CrossEncoder", "load_predictor", "__version__"]

if TYPE_CHECKING:
    from crossenc.cross_encoder import CrossEncoder
    from crossenc.loading import load_predictor


def __getattr__(name: str) -> Any:
    # imported lazily so `import crossenc` stays light
    if name == "CrossEncoder":
        from crossenc.cross_encoder import CrossEncoder

        return CrossEncoder
    if name == "load_predictor":
        from crossenc.loading import load_predictor

        return load_predictor
    raise AttributeError(f"module 'crossenc' has no attribute {name!r}")
