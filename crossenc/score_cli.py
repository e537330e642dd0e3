"""`crossenc score IN OUT`: score a JSONL / Parquet file in this process, or on Ray with ``--ray``."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="rows to score: .jsonl or .parquet")
    parser.add_argument("output", help="where to write them with scores: .jsonl or .parquet")
    parser.add_argument("--model", default="demo", help="model folder, Hub id, or 'demo' (default)")
    parser.add_argument("--backend", default="torch", help="torch, onnx, openvino or auto")
    parser.add_argument("--variant", default=None, help="backend variant (e.g. sdpa, bf16, int8, optimized)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda with --num-gpus, else cpu)")
    parser.add_argument("--accuracy", default=None, help="tier for --backend auto: exact, near or int8")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per model batch (default 32)")
    parser.add_argument("--max-tokens", type=int, default=None, help="tokens per model batch")
    parser.add_argument("--layout", choices=("pairs", "lists"), default="pairs",
                        help="pairs: {query, document} -> score; lists: {query, documents} -> scores, ranking")
    parser.add_argument("--top-k", type=int, default=None, help="lists: keep the best K in 'ranking'")
    parser.add_argument("--query-column", default="query")
    parser.add_argument("--document-column", default="document")
    parser.add_argument("--documents-column", default="documents")
    parser.add_argument("--errors", default=None, metavar="FILE",
                        help="write bad rows here (JSONL: row, error, record) and skip them; default: fail")
    parser.add_argument("--rows-per-call", type=int, default=None,
                        help="rows per scorer call / Ray block (default 2048 pairs, 32 lists)")
    ray = parser.add_argument_group("Ray (the same job on a cluster)")
    ray.add_argument("--ray", default=None, metavar="ADDRESS",
                     help="'local' (start Ray here), 'auto' (the running cluster) or HOST:PORT / ray://...")
    ray.add_argument("--concurrency", type=int, default=None, help="actors, each holding one model (default 1)")
    ray.add_argument("--num-cpus", type=float, default=None,
                     help="CPUs per actor, also its threads (default: cluster CPUs / actors)")
    ray.add_argument("--num-gpus", type=float, default=None, help="GPUs per actor (default 0)")
    ray.add_argument("--no-preserve-order", action="store_true",
                     help="write rows as blocks finish instead of in input order")
    parser.add_argument("--summary", default=None, metavar="FILE", help="write counts and timings as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary line")


def run(args: argparse.Namespace) -> int:
    from crossenc.distributed import score_file

    if not args.verbose:
        import warnings

        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its weight-loading bar; ours is the one that counts rows
        warnings.filterwarnings("ignore", module=r"ray\.")  # Ray's advice on tuning; shown with -v

    ray_options = {
        name: value
        for name, value in (("concurrency", args.concurrency), ("num_cpus", args.num_cpus), ("num_gpus", args.num_gpus))
        if value is not None
    }
    if args.no_preserve_order:
        ray_options["preserve_order"] = False
    if ray_options and args.ray is None:
        raise ValueError(f"--{'/--'.join(name.replace('_', '-') for name in ray_options)} need --ray")
    summary = score_file(
        args.input, args.output, args.model,
        ray=args.ray, errors_path=args.errors, progress=False if args.quiet else None, verbose=args.verbose,
        rows_per_call=args.rows_per_call, layout=args.layout, top_k=args.top_k,
        query_column=args.query_column, document_column=args.document_column,
        documents_column=args.documents_column, backend=args.backend, variant=args.variant,
        device=args.device, accuracy=args.accuracy, batch_size=args.batch_size, max_tokens=args.max_tokens,
        **ray_options,
    )
    if args.summary:
        from crossenc.distributed.files import AtomicFile

        summary_file = AtomicFile(args.summary)
        summary_file.write_lines([json.dumps({"input": args.input, "output": args.output, **summary})])
        summary_file.commit()
    if args.verbose or (not args.quiet and sys.stderr.isatty()):
        bad = f", {summary['bad_rows']} bad -> {args.errors}" if args.errors else ""
        rate = summary["scored"] / summary["seconds"] if summary["seconds"] else 0.0
        print(f"scored {summary['scored']:,} of {summary['rows']:,} rows{bad} in {summary['seconds']:.1f} s "
              f"({rate:,.0f} rows/s) -> {args.output}", file=sys.stderr)
    return 0
