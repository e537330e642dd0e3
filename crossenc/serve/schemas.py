"""Request and response bodies, in the shapes existing clients already speak.

``/rerank``: Hugging Face text-embeddings-inference (router/src/http/types.rs). ``/v1/rerank``:
Cohere v1 (documents as strings or ``{"text"}``); ``/v2/rerank``: Cohere v2 as vLLM serves it.
Strict types: ``"true"`` is not a bool and ``1`` is not a string. Unknown fields are ignored
(clients send options such as ``rank_fields`` that do not apply to a cross-encoder).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


def _direction(value: object) -> object:
    return value.capitalize() if isinstance(value, str) else value  # TEI spells it "Right"; accept "right" too


class TeiRerankRequest(_Request):
    query: str
    texts: list[str] = Field(min_length=1)
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = False  # TEI's default (its --auto-truncate off): refuse overlong pairs
    truncation_direction: Annotated[Literal["Left", "Right"], BeforeValidator(_direction)] = "Right"


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class Document(_Request):
    text: str


class _TokenCaps(_Request):
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    max_tokens_per_query: int | None = Field(default=None, ge=1)


class CohereRerankRequest(_TokenCaps):
    model: str | None = None  # accepted and ignored: one model per server
    query: str
    documents: list[str | Document] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=0)  # None or 0 (vLLM's spelling): every document
    return_documents: bool = False


class CohereV2RerankRequest(CohereRerankRequest):
    documents: list[str] = Field(min_length=1)


class DocumentOut(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: DocumentOut | None = None


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int = 1


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits = BilledUnits()


class Usage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    meta: Meta
    usage: Usage


class PredictRequest(_Request):
    pairs: list[Annotated[tuple[str, str], Strict(False)]]  # strict tuples refuse JSON arrays
    apply_softmax: bool = False
    raw_scores: bool = False  # logits: no activation (softmax still applies when asked for)


class PredictResponse(BaseModel):
    scores: list[float] | list[list[float]]
