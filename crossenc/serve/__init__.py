"""HTTP reranking server: TEI / Cohere / vLLM-shaped routes over one CrossEncoder, with
requests merged across clients by a two-stage (tokenize, score) scheduler.

``create_app(encoder_or_model, settings)`` builds the ASGI app; ``crossenc serve`` runs it on uvicorn.
FastAPI and friends are imported only when an app is built (``pip install 'crossenc[serve]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossenc.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]

if TYPE_CHECKING:
    from crossenc.serve.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":  # lazily: `crossenc serve --help` must work without the extra
        from crossenc.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'crossenc.serve' has no attribute {name!r}")
