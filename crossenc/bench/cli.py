"""`crossenc bench`: measure every backend here, write results/, optionally check against a baseline."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossenc.bench.harness import BenchConfig, BenchRow
    from crossenc.bench.regression import Comparison
    from crossenc.workloads import Workload

# Held-out queries 300-399 of the retrieve-then-rerank workload (BM25 top-100 candidates).
QUICK_WORKLOAD = "debian-bm25:300:3"
FULL_WORKLOAD = "debian-bm25:300:100"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model folder, Hub id, or 'demo' (default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workload", default=None, help=f"debian[-bm25][:START:COUNT], synthetic:Q:D:LOW:HIGH or a JSONL file (default {FULL_WORKLOAD})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_WORKLOAD}, 3 repetitions: a few minutes on 2 cores")
    parser.add_argument("--variants", default=None, help="comma list of backend or backend:variant to run (default: all available)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--repetitions", type=int, default=None,
                        help="timed passes per variant (default 3 with --quick, else 1: one pass is 10,000 pairs)")
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


def _terminal_width() -> int:
    return max(40, min(shutil.get_terminal_size().columns, 100))


def _say(text: str) -> None:
    """A paragraph on stderr, wrapped to the terminal."""
    from crossenc.logs import settle

    settle()
    print(textwrap.fill(text, _terminal_width(), break_on_hyphens=False, break_long_words=False), file=sys.stderr)


def _planned_labels(config: BenchConfig) -> list[str]:
    """The rows run_bench will measure, in its order (for the [i/n] counter and the first-run notice)."""
    from crossenc.bench.harness import planned_candidates

    return [candidate.label for candidate in planned_candidates(config)]


class _RowPrinter:
    """One progress line per measured row: ``[i/n] label  pairs/s  Spearman``."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def __call__(self, row: BenchRow) -> None:
        from crossenc.logs import settle

        self.done += 1
        counter = f"[{self.done:>{len(str(self.total))}}/{self.total}]" if self.done <= self.total else "[+]"
        settle()
        if row.status != "ok":
            print(f"  {counter} {row.label:<32} failed: {row.error}", file=sys.stderr)
            return
        print(f"  {counter} {row.label:<32} {row.throughput['pairs_per_s']:7.1f} pairs/s  "
              f"Spearman {row.quality['spearman']:.4f}", file=sys.stderr)


class _ExportTimes(logging.Handler):
    """Adds up the ``export_seconds`` of crossenc's "built in" export lines while the bench runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds, self.count = 0.0, 0

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "export_seconds"):
            self.seconds += record.export_seconds
            self.count += 1

    def __enter__(self) -> _ExportTimes:
        logging.getLogger("crossenc.exporters.locate").addHandler(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        logging.getLogger("crossenc.exporters.locate").removeHandler(self)


def _missing_exports(config: BenchConfig, labels: list[str]) -> tuple[list[str], int, Path | None]:
    """The ONNX / OpenVINO exports this run must build first (not in the cache yet), how many it uses,
    and the folder they are cached in."""
    from crossenc.exporters.base import failed_path
    from crossenc.exporters.locate import export_cache_dir, has_complete_export
    from crossenc.model_source import ModelSource

    model = Path(config.model)
    if not model.is_dir():
        return [], 0, None  # a Hub id: resolved (and downloaded) by the run itself
    source = ModelSource(path=model.resolve(), name=config.model)
    missing, used, folder = [], set(), None
    for label in labels:
        backend, _, variant = label.partition(" ")
        if backend not in ("onnx", "openvino"):
            continue
        built = variant if backend == "onnx" or variant == "int8" else "fp32"  # OpenVINO bf16 runs the fp32 IR
        target = export_cache_dir(source, backend, built)
        folder = target.parent
        used.add(target)
        done = any(has_complete_export(path) for path in (target, failed_path(target)))
        if not done and f"{backend} {built}" not in missing:
            missing.append(f"{backend} {built}")
    return missing, len(used), folder


def _previous_result(args: argparse.Namespace, workload_spec: str, model: str) -> dict[str, Any] | None:
    """An earlier result of the same model, workload and settings where this run writes, else in this
    device's results folder; None when there is none."""
    from crossenc.bench.results import load_result, results_dir

    target = _output_json(args)
    settings = {"workload": workload_spec, "repetitions": args.repetitions, "latency_requests": args.latency_requests,
                "batch_size": args.batch_size, "device": args.device}
    for path in (target, results_dir(args.device) / target.name):
        try:
            previous = load_result(path)
        except (OSError, ValueError):
            continue
        config = previous.get("config", {})
        same_model = Path(str(config.get("model"))).name == Path(model).name  # the demo's cache folder may move
        if same_model and all(config.get(key) == value for key, value in settings.items()):
            return previous
    return None


def cached_run_minutes(previous: dict[str, Any], labels: list[str]) -> float | None:
    """How long a run of ``labels`` takes with every export cached, from an earlier result: its own timing
    when it measured the same rows, else the sum of each row's load, timed passes and rank() calls."""
    timing = previous.get("timing")
    rows = {row["label"]: row for row in previous["rows"] if row["status"] == "ok"}
    if timing and set(labels) == {row["label"] for row in previous["rows"]}:
        return (timing["seconds"] - timing["export_seconds"]) / 60
    if not set(labels) <= set(rows):
        return None
    config, pairs = previous["config"], previous["workload"]["pairs"]
    seconds = 30.0  # imports and the tokenizer probe
    for label in labels:
        row = rows[label]
        seconds += min(row.get("load_seconds") or 0.0, 30.0)  # a load that exported first says nothing of later runs
        seconds += config["repetitions"] * pairs / row["throughput"]["pairs_per_s"]
        seconds += (config["latency_requests"] + 1) * row["latency"]["p50_ms"] / 1000  # one warm-up rank() call
    return seconds / 60


def _first_run_notice(config: BenchConfig, labels: list[str], previous: dict[str, Any] | None) -> None:
    try:
        missing, used, folder = _missing_exports(config, labels)
    except Exception:  # only a notice: never fail the run over it
        return
    if not missing:
        return
    cached_minutes = cached_run_minutes(previous, labels) if previous else None
    later = f"about {cached_minutes:.0f} min here" if cached_minutes else "only the measuring, a few minutes"
    timing = (previous or {}).get("timing") or {}
    work = (f"about {timing['export_seconds'] / 60:.0f} min for {timing['exports_built']} when last measured here"
            if timing.get("exports_built") else "minutes of work")
    opening = "First run for this model here: " if len(missing) == used else ""
    calibrated = ", int8 ones calibrated first" if any(name.endswith(" int8") for name in missing) else ""
    _say(f"{opening}{len(missing)} export(s) ({', '.join(missing)}) are built and verified against torch before "
         f"they are measured{calibrated}: {work}, one line per export below. They are cached in {folder}; "
         f"later runs reuse them ({later}).")


def _show(result: dict) -> None:
    from crossenc.bench.results import terminal_table
    from crossenc.logs import settle

    settle()
    print(terminal_table(result, _terminal_width()), end="")


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
    if args.repetitions is None:
        args.repetitions = 1 if workload_spec == FULL_WORKLOAD else 3
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
    labels = _planned_labels(config)
    previous = _previous_result(args, workload_spec, config.model)
    print(f"crossenc bench: {workload.name}, {workload.num_pairs} pairs, {len(labels)} variants on {args.device}",
          file=sys.stderr)
    _first_run_notice(config, labels, previous)
    started = time.perf_counter()
    with _ExportTimes() as exports:
        result = run_bench(config, workload, on_row=_RowPrinter(len(labels)))
    seconds = time.perf_counter() - started
    result["timing"] = {"seconds": round(seconds, 1), "export_seconds": round(exports.seconds, 1),
                        "exports_built": exports.count}
    _show(result)
    if not args.no_write:
        target = _output_json(args)
        paths = write_result(result, target.parent, target.stem)
        _say("wrote " + ", ".join(str(path) for path in paths.values()) + f" (all columns in {paths['md'].name})")
    took = f"took {seconds / 60:.1f} min"
    if exports.count:
        took += (f", {exports.seconds / 60:.1f} min of it building {exports.count} export(s); they are cached now, "
                 f"so a run like this takes about {(seconds - exports.seconds) / 60:.1f} min")
    _say(took)
    if baseline is None:
        return 0
    try:
        comparison = compare_results(baseline, result, args.max_regression, args.max_quality_drop,
                                     require_all=not args.variants)  # all variants asked: a missing one fails
    except BaselineError as error:
        print(f"error: {error} ({args.compare})", file=sys.stderr)
        return 2
    return _report(comparison, args)
