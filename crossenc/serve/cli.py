"""``crossenc serve MODEL``: the reranking server on uvicorn (thin: parses, builds the app, runs it)."""

from __future__ import annotations

import argparse
import os
import sys

from crossenc.serve.settings import (
    DEFAULT_MAX_DOCUMENTS,
    DEFAULT_MAX_QUEUE_PAIRS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    ServeSettings,
)

API_KEY_ENV = "CROSSENC_API_KEY"
SHUTDOWN_GRACE = 5.0  # seconds beyond the request timeout that a drain may take before uvicorn gives up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder, Hub id, or 'demo'")
    parser.add_argument("--backend", default="torch", help="torch, onnx, openvino or auto (default: torch)")
    parser.add_argument("--variant", default=None, help="backend variant (e.g. sdpa, bf16, int8)")
    parser.add_argument("--accuracy", default=None, help="tier for --backend auto: exact, near or int8")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per pair (default: the model's)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument("--max-batch-tokens", type=int, default=None,
                        help="tokens per model batch (default: 1024 on CPU, 16384 on GPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per model batch (default: from tokens)")
    parser.add_argument("--max-queue-pairs", type=int, default=DEFAULT_MAX_QUEUE_PAIRS,
                        help=f"pairs admitted at once; more get 429 (default: {DEFAULT_MAX_QUEUE_PAIRS})")
    parser.add_argument("--max-documents", type=int, default=DEFAULT_MAX_DOCUMENTS,
                        help=f"documents or pairs per request (default: {DEFAULT_MAX_DOCUMENTS})")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help=f"request body limit; more get 413 (default: {DEFAULT_MAX_REQUEST_BYTES})")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, else none)")
    parser.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT,
                        help=f"seconds before a request answers 504 (default: {DEFAULT_REQUEST_TIMEOUT:g})")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(
        max_documents=args.max_documents,
        max_request_bytes=args.max_request_bytes,
        max_queue_pairs=args.max_queue_pairs,
        max_batch_tokens=args.max_batch_tokens,
        batch_size=args.batch_size,
        request_timeout=args.request_timeout,
        api_key=args.api_key or None,
        model_name=args.model,
        backend=args.backend,
        variant=args.variant,
        device=args.device,
        accuracy=args.accuracy,
        max_length=args.max_length,
    )


def run(args: argparse.Namespace) -> int:
    from crossenc.optional import require

    uvicorn = require("uvicorn", "serve", "crossenc serve")
    from crossenc.serve.app import create_app

    settings = settings_from_args(args)
    app = create_app(args.model, settings)
    info = app.state.crossenc.encoder.info()
    print(f"crossenc serve: http://{args.host}:{args.port} {args.model} "
          f"({info.get('backend')} {info.get('variant')}, {info.get('device')})", file=sys.stderr, flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.log_level in ("info", "debug", "trace"),
        timeout_graceful_shutdown=settings.request_timeout + SHUTDOWN_GRACE,
    )
    return 0
