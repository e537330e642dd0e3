"""ASGI middleware: request-size limit before any parsing, and per-route request metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from crossenc.optional import require
from crossenc.serve.metrics import ServeMetrics

fastapi = require("fastapi", "serve", "crossenc serve")


def error_body(message: str, error_type: str) -> dict:
    """Every error the server sends: TEI's shape (``error``, ``error_type``)."""
    return {"error": message, "error_type": error_type}


async def send_json(send, status: int, body: dict, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """413 for bodies over ``max_bytes``: from Content-Length before reading, else while reading
    (chunked uploads), so an oversized body is never buffered whole or parsed."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: str) -> str:
        return f"request body of {size} bytes exceeds the server's limit of {self.max_bytes} bytes"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await send_json(send, 413, error_body(self._message(declared.decode(errors="replace")), "payload"))
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # fastapi's HTTPException: FastAPI re-raises it from body reading (others become 400)
                    raise fastapi.HTTPException(413, self._message(f"more than {self.max_bytes}"))
            return message

        await self.app(scope, limited_receive, send)


class RequestMetrics:
    """Count and time every HTTP request by route template (unknown paths share one label)."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_progress.dec()
            route = scope.get("route")
            self.metrics.observe_request(getattr(route, "path", "other"), status, started)
