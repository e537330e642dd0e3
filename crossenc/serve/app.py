"""The ASGI app: routes translate HTTP into scheduler calls and scores back; nothing else scores.

``create_app(encoder_or_model, settings)`` returns a FastAPI app to run with uvicorn or mount in
yours (mounted apps get no lifespan: the scheduler then starts on the first request, and
``app.state.crossenc.close()`` drains it on your shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import uuid
from typing import Any

from crossenc.optional import require

require("fastapi", "serve", "crossenc serve")  # before the imports below: name the extra if missing

import anyio  # noqa: E402  (a FastAPI dependency)
from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.encoders import jsonable_encoder  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from crossenc.scores import logits_to_scores, rank_order  # noqa: E402
from crossenc.serve.metrics import ServeMetrics  # noqa: E402
from crossenc.serve.middleware import BodyLimit, RequestMetrics, error_body  # noqa: E402
from crossenc.serve.scheduler import QueueFull, Scheduler, Scored, ShuttingDown  # noqa: E402
from crossenc.serve.schemas import (  # noqa: E402
    ApiVersion,
    CohereRerankRequest,
    CohereV2RerankRequest,
    DocumentOut,
    Meta,
    PredictRequest,
    PredictResponse,
    RerankResponse,
    RerankResult,
    TeiRank,
    TeiRerankRequest,
    Usage,
)
from crossenc.serve.settings import ServeSettings  # noqa: E402
from crossenc.serve.texts import PairTooLong, TextTools  # noqa: E402


class ApiError(Exception):
    """An error answer: HTTP status, message, TEI error type, extra headers."""

    def __init__(self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type, self.headers = status, message, error_type, headers


class ServeState:
    """What the routes share: the encoder, its scheduler, text tools, metrics, settings."""

    def __init__(self, encoder, settings: ServeSettings) -> None:
        self.encoder = encoder
        self.settings = settings
        if settings.max_batch_tokens is not None:
            encoder.max_tokens = settings.max_batch_tokens
        # Rows per batch: let the token budget decide (64 tokens is a short reranking pair).
        batch_size = settings.batch_size or max(32, encoder.max_tokens // 64)
        self.scheduler = Scheduler(
            encoder,
            max_queue_pairs=settings.max_queue_pairs,
            max_group_pairs=settings.max_group_pairs,
            batch_size=batch_size,
            observe=lambda stats: self.metrics.observe_group(stats),
        )
        self.metrics = ServeMetrics(lambda: self.scheduler.queued_pairs, lambda: self.scheduler.queued_requests)
        self.texts = TextTools(encoder)
        self.model_name = settings.model_name or encoder.info().get("model") or "crossenc"

    def close(self, timeout: float | None = None) -> None:
        self.scheduler.close(timeout)

    def check_count(self, count: int, field: str) -> None:
        if count > self.settings.max_documents:
            raise ApiError(422, f"{field} has {count} items; this server takes at most {self.settings.max_documents}",
                           "validation")

    def check_reranker(self) -> None:
        if self.encoder.num_labels != 1:
            raise ApiError(422, f"reranking needs a 1-label model; this one has {self.encoder.num_labels} labels: "
                                "use /predict", "validation")

    async def score(self, pairs: list[tuple[str, str]], **options: Any) -> Scored:
        """Admit, wait for the scheduler, map its refusals to answers; 504 after ``request_timeout``."""
        try:
            future = self.scheduler.submit(pairs, **options)
        except QueueFull as error:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, str(error), "overloaded", {"Retry-After": str(error.retry_after)}) from None
        except ShuttingDown as error:
            self.metrics.rejected.labels("shutting_down").inc()
            raise ApiError(503, str(error), "unhealthy", {"Retry-After": "1"}) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.settings.request_timeout)
        except asyncio.TimeoutError:  # the wrapped future's cancel drops the request if not started
            self.metrics.rejected.labels("timeout").inc()
            raise ApiError(504, f"no answer within the server's {self.settings.request_timeout:g} s request "
                                "timeout; send fewer documents or retry later", "timeout") from None

    def scores(self, scored: Scored, raw: bool, apply_softmax: bool = False) -> list:
        activation = None if raw else self.encoder.activation_fn
        return logits_to_scores(scored.logits, activation, apply_softmax, self.encoder.num_labels).tolist()

    async def rerank(self, query: str, documents: list[str], *, raw: bool = False, field: str = "documents",
                     query_cap: int | None = None, doc_cap: int | None = None, **options: Any) -> tuple[list, int]:
        """``(scores in input order, real tokens)`` of ``documents`` against ``query``."""
        self.check_reranker()
        self.check_count(len(documents), field)
        if query_cap or doc_cap:  # tokenizing: off the event loop
            query, documents = await anyio.to_thread.run_sync(self._capped, query, documents, query_cap, doc_cap)
        scored = await self.score([(query, document) for document in documents], **options)
        return self.scores(scored, raw), scored.tokens

    def _capped(self, query: str, documents: list[str], query_cap: int | None, doc_cap: int | None):
        if query_cap:
            query = self.texts.cap([query], query_cap)[0]
        if doc_cap:
            documents = self.texts.cap(documents, doc_cap)
        return query, documents


def _state(request: Request) -> ServeState:
    return request.app.state.crossenc


def _require_key(request: Request) -> None:
    expected = _state(request).settings.api_key
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                       "unauthorized", {"WWW-Authenticate": "Bearer"})


def _require_json(request: Request) -> None:
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, f"Content-Type is {kind!r}; send the body as JSON with 'Content-Type: application/json'",
                       "validation")


def _load(model: str | os.PathLike, settings: ServeSettings):
    from crossenc import CrossEncoder
    from crossenc.demo import expand_alias

    return CrossEncoder(
        expand_alias(str(model)),
        backend=settings.backend,
        variant=settings.variant,
        device=settings.device,
        accuracy=settings.accuracy,
        max_length=settings.max_length,
        max_tokens=settings.max_batch_tokens,
    )


def create_app(encoder_or_model: Any, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``encoder_or_model`` (a CrossEncoder, or a folder, Hub id or ``demo`` to load
    with ``settings``' backend options). ``settings.max_batch_tokens`` sets the encoder's ``max_tokens``."""
    settings = settings or ServeSettings()
    if isinstance(encoder_or_model, (str, os.PathLike)):
        encoder_or_model = _load(encoder_or_model, settings)
        if settings.model_name is None:
            settings = dataclasses.replace(settings, model_name=str(encoder_or_model.source.name))
    state = ServeState(encoder_or_model, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.scheduler.start()
        yield
        await anyio.to_thread.run_sync(state.close)  # uvicorn has finished in-flight requests by now

    app = FastAPI(title="crossenc", summary="cross-encoder reranking", lifespan=lifespan)
    app.state.crossenc = state
    _add_error_handlers(app)
    _add_routes(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestMetrics, metrics=state.metrics)  # outermost: counts 413s too
    return app


def _json_error(status: int, message: str, error_type: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, error_type), status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        if item.get("type") == "json_invalid":
            reason = item.get("ctx", {}).get("error", "malformed")
            parts.append(f"body is not valid JSON: {reason} at character {item['loc'][-1]}")
            continue
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = len(error.errors()) - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return _json_error(error.status, error.message, error.error_type, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        return _json_error(422, _validation_message(error), "validation")

    @app.exception_handler(PairTooLong)
    async def too_long(request: Request, error: PairTooLong):
        return _json_error(422, str(error), "validation")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        kinds = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload"}
        return _json_error(error.status_code, str(error.detail), kinds.get(error.status_code, "http"), error.headers)

    @app.exception_handler(FloatingPointError)
    async def non_finite(request: Request, error: FloatingPointError):
        return _json_error(500, str(error), "backend")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):  # starlette still logs the traceback
        return _json_error(500, f"internal error: {type(error).__name__}: {error}", "backend")


def _add_routes(app: FastAPI) -> None:
    guarded = [Depends(_require_key)]
    posted = [*guarded, Depends(_require_json)]

    @app.get("/health")
    async def health(request: Request):
        if not _state(request).scheduler.alive:
            raise ApiError(503, "the scheduler is not running (shutting down)", "unhealthy")
        return {"status": "ok"}

    @app.get("/info", dependencies=guarded)
    async def info(request: Request):
        state = _state(request)
        encoder = state.encoder
        details = {**encoder.info(), "max_length": encoder.max_length, "num_labels": encoder.num_labels}
        return jsonable_encoder({**details, "model": state.model_name, "server": state.settings.public()})

    @app.get("/metrics", dependencies=guarded)
    async def metrics(request: Request):
        body, content_type = _state(request).metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/rerank", dependencies=posted, response_model=list[TeiRank], response_model_exclude_none=True)
    async def rerank_tei(body: TeiRerankRequest, request: Request):
        state = _state(request)
        options: dict[str, Any] = {"field": "texts", "raw": body.raw_scores}
        if body.truncate and body.truncation_direction == "Left":
            options["tokenize"] = state.texts.left_tokenizer()
        if not body.truncate:
            options["check"] = state.texts.refuse_overlong("texts")
        scores, _ = await state.rerank(body.query, body.texts, **options)
        return [
            TeiRank(index=index, score=scores[index], text=body.texts[index] if body.return_text else None)
            for index in rank_order(scores)
        ]

    @app.post("/v1/rerank", dependencies=posted, response_model=RerankResponse, response_model_exclude_none=True)
    async def rerank_v1(body: CohereRerankRequest, request: Request):
        return await _cohere(_state(request), body, "1")

    @app.post("/v2/rerank", dependencies=posted, response_model=RerankResponse, response_model_exclude_none=True)
    async def rerank_v2(body: CohereV2RerankRequest, request: Request):
        return await _cohere(_state(request), body, "2")

    @app.post("/predict", dependencies=posted, response_model=PredictResponse)
    async def predict(body: PredictRequest, request: Request):
        state = _state(request)
        state.check_count(len(body.pairs), "pairs")
        if not body.pairs:
            return PredictResponse(scores=[])
        scored = await state.score([tuple(pair) for pair in body.pairs])
        return PredictResponse(scores=state.scores(scored, body.raw_scores, body.apply_softmax))


async def _cohere(state: ServeState, body: CohereRerankRequest, version: str) -> RerankResponse:
    texts = [document if isinstance(document, str) else document.text for document in body.documents]
    scores, tokens = await state.rerank(
        body.query, texts, query_cap=body.max_tokens_per_query, doc_cap=body.max_tokens_per_doc
    )
    results = [
        RerankResult(
            index=index,
            relevance_score=scores[index],
            document=DocumentOut(text=texts[index]) if body.return_documents else None,
        )
        for index in rank_order(scores)[: body.top_n or None]
    ]
    return RerankResponse(
        id=str(uuid.uuid4()),
        model=state.model_name,
        results=results,
        meta=Meta(api_version=ApiVersion(version=version)),
        usage=Usage(total_tokens=tokens),
    )


__all__ = ["ApiError", "ServeState", "create_app"]
