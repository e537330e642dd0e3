"""`crossenc bench`: measure every backend here, write results/, optionally check against a baseline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossenc.bench.regression import Comparison
    from crossenc.workloads import Workload

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
    parser.add_argument("--compare", default=None, metavar="BASELINE.json",
                        help="exit 1 when a crossenc row regresses against this result of the same workload and device")
    parser.add_argument("--max-regression", type=_fraction, default=0.15,
                        help="allowed relative drop of pairs/s as a ratio to torch eager, 0 < x < 1 (default 0.15)")
    parser.add_argument("--max-quality-drop", type=_quality_drop, default=0.005,
                        help="allowed absolute drop of Spearman and top-10 agreement, 0 <= x < 1 (default 0.005)")
    parser.add_argument("--no-write", action="store_true", help="do not write results files")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (exclusive): 0.15 allows a 15% drop")
    return value


def _quality_drop(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1): an absolute drop of Spearman / top-10 agreement")
    return value


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


def _output_json(args: argparse.Namespace) -> Path:
    from crossenc.bench.results import results_dir

    folder = Path(args.out) if args.out else results_dir(args.device)
    return folder / f"{args.stem or ('bench-quick' if args.quick else 'bench')}.json"


def _checked_baseline(args: argparse.Namespace, workload_spec: str, workload: Workload) -> dict[str, Any] | None:
    """The --compare result, checked against this run's plan before minutes of measuring (BaselineError)."""
    from crossenc.bench.baseline import BaselineError, load_baseline, require_comparable

    if not args.compare:
        return None
    baseline = load_baseline(args.compare)
    target = _output_json(args)
    if not args.no_write and target.exists() and target.samefile(args.compare):
        raise BaselineError(f"this run would write {target}, which is the baseline --compare {args.compare}; add "
                            "--no-write, or --out DIR / --stem NAME to keep the new results elsewhere")
    planned = {
        "config": {"workload": workload_spec, "device": args.device, "batch_size": args.batch_size,
                   "max_tokens": args.max_tokens},
        "workload": {"name": workload.name, "queries": len(workload.queries), "pairs": workload.num_pairs},
    }
    require_comparable(baseline, planned, args.compare)
    return baseline


def _report(comparison: Comparison, args: argparse.Namespace) -> int:
    """Print the comparison; 1 on a regression, 2 when nothing could be compared, else 0."""
    for warning in comparison.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in comparison.notes:
        print(f"note: {note}", file=sys.stderr)
    for regression in comparison.regressions:
        print(f"REGRESSION {regression.describe()}", file=sys.stderr)
    if comparison.regressions:
        print(f"{len(comparison.regressions)} regression(s) against {args.compare}", file=sys.stderr)
        return 1
    if not comparison.compared:
        print(f"error: no crossenc row of {args.compare} was measured in this run: nothing compared", file=sys.stderr)
        return 2
    print(f"no regression beyond {args.max_regression:.0%} pairs/s or {args.max_quality_drop} quality in "
          f"{len(comparison.compared)} row(s) against {args.compare}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from crossenc.bench.baseline import BaselineError
    from crossenc.bench.regression import compare_results
    from crossenc.bench.harness import BenchConfig, run_bench
    from crossenc.bench.results import write_result
    from crossenc.workloads import load_workload
    from crossenc.demo import expand_alias

    workload_spec = args.workload or (QUICK_WORKLOAD if args.quick else FULL_WORKLOAD)
    workload = load_workload(workload_spec)
    try:
        baseline = _checked_baseline(args, workload_spec, workload)
    except BaselineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = BenchConfig(
        model=expand_alias(args.model),
        device=args.device,
        workload=workload_spec,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        repetitions=args.repetitions,
        latency_requests=args.latency_requests,
        variants=args.variants.split(",") if args.variants else None,
        include_reference=not args.no_reference,
    )
    print(f"crossenc bench: {workload.name}, {workload.num_pairs} pairs, device {args.device}", file=sys.stderr)
    result = run_bench(config, workload, on_row=_print_row)
    _show(result)
    if not args.no_write:
        target = _output_json(args)
        paths = write_result(result, target.parent, target.stem)
        print("wrote " + ", ".join(str(path) for path in paths.values()), file=sys.stderr)
    if baseline is None:
        return 0
    try:
        comparison = compare_results(baseline, result, args.max_regression, args.max_quality_drop,
                                     require_all=not args.variants)  # all variants asked: a missing one fails
    except BaselineError as error:
        print(f"error: {error} ({args.compare})", file=sys.stderr)
        return 2
    return _report(comparison, args)
