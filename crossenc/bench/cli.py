"""`crossenc bench`: measure every backend here, write results/, optionally check against a baseline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

QUICK_WORKLOAD = "debian:300:3"
FULL_WORKLOAD = "debian:300:10"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model folder, Hub id, or 'demo' (default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workload", default=None, help=f"debian[:START:COUNT], synthetic:Q:D:LOW:HIGH or a JSONL file (default {FULL_WORKLOAD})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_WORKLOAD}, 3 repetitions: a few minutes on 2 cores")
    parser.add_argument("--variants", default=None, help="comma list of backend or backend:variant to run (default: all available)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--latency-requests", type=int, default=5, help="rank() calls of one query x its documents")
    parser.add_argument("--no-reference", action="store_true", help="skip the sentence-transformers rows")
    parser.add_argument("--out", default=None, help="results folder (default results/<device-slug>)")
    parser.add_argument("--stem", default=None, help="file name stem (default bench or bench-quick)")
    parser.add_argument("--compare", default=None, metavar="BASELINE.json", help="fail when a tracked figure regresses")
    parser.add_argument("--max-regression", type=float, default=0.15, help="allowed relative pairs/s drop vs baseline")
    parser.add_argument("--no-write", action="store_true", help="do not write results files")


def _print_row(row) -> None:
    if row.status != "ok":
        print(f"  {row.label:<40} error: {row.error}", file=sys.stderr)
        return
    print(f"  {row.label:<40} {row.throughput['pairs_per_s']:8.1f} pairs/s  spearman {row.quality['spearman']:.4f}", file=sys.stderr)


def _show(result: dict) -> None:
    from crossenc.bench.results import markdown_table

    try:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(markdown_table(result)))
    except ImportError:
        print(markdown_table(result))


def run(args: argparse.Namespace) -> int:
    from crossenc.bench.compare import compare_results
    from crossenc.bench.harness import BenchConfig, run_bench
    from crossenc.bench.results import load_result, results_dir, write_result
    from crossenc.bench.workload import load_workload
    from crossenc.cli import resolve_model_argument

    workload_spec = args.workload or (QUICK_WORKLOAD if args.quick else FULL_WORKLOAD)
    config = BenchConfig(
        model=resolve_model_argument(args.model),
        device=args.device,
        workload=workload_spec,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        repetitions=args.repetitions,
        latency_requests=args.latency_requests,
        variants=args.variants.split(",") if args.variants else None,
        include_reference=not args.no_reference,
    )
    workload = load_workload(workload_spec)
    print(f"crossenc bench: {workload.name}, {workload.num_pairs} pairs, device {args.device}", file=sys.stderr)
    result = run_bench(config, workload, on_row=_print_row)
    _show(result)
    if not args.no_write:
        folder = Path(args.out) if args.out else results_dir(args.device)
        paths = write_result(result, folder, args.stem or ("bench-quick" if args.quick else "bench"))
        print("wrote " + ", ".join(str(path) for path in paths.values()), file=sys.stderr)
    if args.compare:
        regressions, notes = compare_results(load_result(args.compare), result, args.max_regression)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        for regression in regressions:
            print(f"REGRESSION {regression.describe()}", file=sys.stderr)
        if regressions:
            return 1
        print(f"no regression beyond {args.max_regression:.0%} against {args.compare}", file=sys.stderr)
    return 0
