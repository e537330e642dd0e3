"""Command line: ``crossenc predict | rank | score | export | bench | autotune | serve | support``. Thin: parses, calls the API."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from crossenc.demo import DEMO_ALIAS, expand_alias

DEFAULT_MODEL = DEMO_ALIAS
# Subcommands that live beside the code they drive: name -> module with add_arguments(parser) and run(args).
EXTERNAL_COMMANDS = {
    "export": ("crossenc.exporters.cli", "export a checkpoint to ONNX / OpenVINO and verify it"),
    "bench": ("crossenc.bench.cli", "benchmark every backend on this machine"),
    "bench-host": ("crossenc.bench.host_pipeline", "measure the host's tokenize/batch/pack stages (what feeds a GPU)"),
    "autotune": ("crossenc.bench.autotune_cli", "pick the fastest backend within an accuracy budget"),
    "support": ("crossenc.support", "try every backend/variant on one model here: ok / refused / not here"),
    "serve": ("crossenc.serve.cli", "HTTP reranking server (TEI / Cohere routes, cross-request batching)"),
    "score": ("crossenc.score_cli", "score a JSONL / Parquet file in-process, or on Ray with --ray"),
}


def _read_json_lines(handle: TextIO, source: str) -> Iterator[tuple[int, Any]]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as error:
            raise SystemExit(f"error: {source}:{line_number}: not valid JSON ({error.msg})") from None


def read_pairs(handle: TextIO, source: str) -> list[tuple[str, str]]:
    """JSONL of ``["query", "document"]`` or ``{"query": ..., "document": ...}``."""
    pairs = []
    for line_number, record in _read_json_lines(handle, source):
        if isinstance(record, dict) and "query" in record and "document" in record:
            pairs.append((record["query"], record["document"]))
        elif isinstance(record, list) and len(record) == 2:
            pairs.append((record[0], record[1]))
        else:
            raise SystemExit(f"error: {source}:{line_number}: expected [query, document] or {{query, document}}")
    return pairs


def read_rank_requests(handle: TextIO, source: str) -> list[dict[str, Any]]:
    """JSONL of ``{"query": str, "documents": [str, ...]}``."""
    requests = []
    for line_number, record in _read_json_lines(handle, source):
        if not (isinstance(record, dict) and "query" in record and isinstance(record.get("documents"), list)):
            raise SystemExit(f"error: {source}:{line_number}: expected {{'query': str, 'documents': [str, ...]}}")
        requests.append(record)
    return requests


def _open_input(path: str) -> TextIO:
    return sys.stdin if path == "-" else open(path, encoding="utf-8")


def _load_encoder(args: argparse.Namespace):
    from crossenc import CrossEncoder

    return CrossEncoder(
        expand_alias(args.model),
        backend=args.backend,
        variant=args.variant,
        device=args.device,
        max_length=args.max_length,
    )


def run_predict(args: argparse.Namespace) -> int:
    with _open_input(args.input) as handle:
        pairs = read_pairs(handle, args.input)
    encoder = _load_encoder(args)
    scores = encoder.predict(pairs, batch_size=args.batch_size, show_progress_bar=args.progress)
    json.dump(scores.tolist(), sys.stdout)
    sys.stdout.write("\n")
    return 0


def run_rank(args: argparse.Namespace) -> int:
    with _open_input(args.input) as handle:
        requests = read_rank_requests(handle, args.input)
    encoder = _load_encoder(args)
    results = [
        {
            "query": request["query"],
            "results": encoder.rank(
                request["query"],
                request["documents"],
                top_k=args.top_k,
                return_documents=args.return_documents,
                batch_size=args.batch_size,
            ),
        }
        for request in requests
    ]
    json.dump(results, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder, Hub id, or 'demo' (default)")
    parser.add_argument("--backend", default="torch", help="torch, onnx, openvino or auto")
    parser.add_argument("--variant", default=None, help="backend variant (e.g. sdpa, bf16, int8, optimized)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=None)


def _add_verbose(parser: argparse.ArgumentParser, default: Any = 0) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="also show other libraries' logs and progress bars as they print them "
                             "(-vv: every INFO log and crossenc's debug logs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossenc", description="Fast, verified cross-encoder reranking.")
    _add_verbose(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser("predict", help="score (query, document) pairs from JSONL; prints a JSON list")
    predict.add_argument("input", nargs="?", default="-", help="JSONL file of pairs, or - for stdin")
    predict.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    _add_model_arguments(predict)
    predict.set_defaults(handler=run_predict)
    rank = commands.add_parser("rank", help="rank documents for queries from JSONL; prints JSON")
    rank.add_argument("input", nargs="?", default="-", help="JSONL of {query, documents}, or - for stdin")
    rank.add_argument("--top-k", type=int, default=None)
    rank.add_argument("--return-documents", action="store_true")
    _add_model_arguments(rank)
    rank.set_defaults(handler=run_rank)
    for name, (module_name, help_text) in EXTERNAL_COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            subparser.set_defaults(handler=lambda _args, error=error: sys.exit(f"error: {error}"))
            continue
        module.add_arguments(subparser)
        subparser.set_defaults(handler=module.run)
    _add_verbose_to_commands(parser)  # -v before or after a command name
    return parser


def _add_verbose_to_commands(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _add_verbose(subparser, default=argparse.SUPPRESS)
                _add_verbose_to_commands(subparser)


def main(argv: list[str] | None = None) -> int:
    from crossenc.errors import VerificationFailed
    from crossenc.logs import cli_logging, settle

    args = build_parser().parse_args(argv)
    with cli_logging(args.verbose):  # crossenc's progress, others' warnings; -v: everything
        try:
            return int(args.handler(args) or 0)
        except VerificationFailed as error:
            settle()
            print(f"VERIFICATION FAILED: {error}", file=sys.stderr)
            return 1
        except (TypeError, ValueError, FileNotFoundError, ImportError) as error:
            settle()
            print(f"error: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
