"""What a server is allowed to do: limits, loading options, security. No web imports here."""

from __future__ import annotations

from dataclasses import dataclass, fields

from crossenc.tokenize_ahead import DEFAULT_CHUNK_PAIRS

DEFAULT_MAX_DOCUMENTS = 1000  # Cohere's documented limit per rerank request
DEFAULT_MAX_REQUEST_BYTES = 2_000_000  # TEI's default payload limit
DEFAULT_MAX_QUEUE_PAIRS = 4096  # ~1 minute of MiniLM-L6 fp32 on a 2-core CPU; seconds on a GPU
DEFAULT_REQUEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServeSettings:
    """Limits and options of one server. Loading options apply when ``create_app`` gets a model name."""

    max_documents: int = DEFAULT_MAX_DOCUMENTS  # per request (rerank documents, predict pairs)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # request bodies beyond this answer 413
    max_queue_pairs: int = DEFAULT_MAX_QUEUE_PAIRS  # admitted, unanswered pairs; more answer 429
    max_group_pairs: int = DEFAULT_CHUNK_PAIRS  # pairs of several requests merged into one pipeline call
    max_batch_tokens: int | None = None  # tokens per model batch; None keeps the encoder's max_tokens
    batch_size: int | None = None  # rows per model batch; None lets the token budget decide
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds from admission to answer; then 504
    api_key: str | None = None  # when set, every route but /health needs "Authorization: Bearer <key>"
    model_name: str | None = None  # the name responses carry; None: the encoder's
    backend: str = "torch"
    variant: str | None = None
    device: str | None = None
    accuracy: str | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_request_bytes", "max_queue_pairs", "max_group_pairs"):
            _positive(name, getattr(self, name))
        for name in ("max_batch_tokens", "batch_size", "max_length"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout={self.request_timeout!r}; expected seconds > 0")
        if self.max_queue_pairs < self.max_documents:
            raise ValueError(
                f"max_queue_pairs={self.max_queue_pairs} is below max_documents={self.max_documents}: "
                "a full-size request could never be admitted; raise max_queue_pairs"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty; pass None for no key")

    def public(self) -> dict:
        """The settings /info shows: everything but the key."""
        shown = {field.name: getattr(self, field.name) for field in fields(self) if field.name != "api_key"}
        return {**shown, "api_key_required": self.api_key is not None}


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r}; expected a positive integer")
