"""Where end-to-end GPU throughput is lost between the host tokenizer and the device (a one-off probe).

gpu_check showed the device scoring pre-tokenized Debian pairs at ~96,000 pairs/s (packed fp16,
Triton, CUDA graphs) while end-to-end calls reach ~36,000, and tokenizer worker processes made it
worse (~16,000). Each row here changes one thing on the end-to-end packed-fp16 + Triton + graphs
+ in_flight 2 call: token budget, in-flight depth, the interpreter's GIL switch interval, worker
process count and chunk size. Run it on the GPU machine after ``scripts/prepare_gpu_check.py``::

    PYTHONPATH=$PWD python3 scripts/gpu_feed_probe.py --model .device-carry/demo-fp16 --out $OUT/feed
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from crossenc.bench import gpu_check

BATCH, TOKENS = gpu_check.CROSSENC_BATCH, gpu_check.PACKED_MAX_TOKENS
BASE = {"use_triton": True, "cuda_graphs": True, "graph_max_tokens": TOKENS, "in_flight": 2}
BIG = {**BASE, "graph_max_tokens": 2 * TOKENS, "graph_max_batch": 4 * BATCH}


@contextlib.contextmanager
def switch_interval(seconds: float | None) -> Iterator[None]:
    """The GIL switch interval set to ``seconds`` (None: unchanged) for the block."""
    previous = sys.getswitchinterval()
    if seconds is not None:
        sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@contextlib.contextmanager
def whole_chunks(enabled: bool) -> Iterator[None]:
    """Worker chunks at their largest (2048 pairs) instead of ~two per worker."""
    import crossenc.cross_encoder as module

    original = module.process_chunk_pairs
    if enabled:
        module.process_chunk_pairs = lambda num_pairs, processes, batch_size, largest: largest
    try:
        yield
    finally:
        module.process_chunk_pairs = original


def plan(path: Path, processes: int):
    """(name, scorer factory, fields, GIL switch interval, whole chunks)."""

    def row(options, batch, tokens, procs=None):
        return lambda: gpu_check.crossenc_scorer(path, "packed-fp16", options, batch, tokens, tokenizer_processes=procs)

    fields = {"batch_size": BATCH, "max_tokens": TOKENS}
    big = {"batch_size": 4 * BATCH, "max_tokens": 2 * TOKENS}
    return [
        ("in-process", row(BASE, BATCH, TOKENS), fields, None, False),
        ("in-process, switch interval 0.5 ms", row(BASE, BATCH, TOKENS), fields, 0.0005, False),
        ("in-process, in_flight 3", row({**BASE, "in_flight": 3}, BATCH, TOKENS), fields, None, False),
        ("in-process, batch 1024 / 65536 tokens", row(BIG, 4 * BATCH, 2 * TOKENS), big, None, False),
        (f"{processes} processes", row(BASE, BATCH, TOKENS, processes), fields, None, False),
        (f"{processes} processes, switch interval 0.5 ms", row(BASE, BATCH, TOKENS, processes), fields, 0.0005,
         False),
        (f"{processes} processes, 2048-pair chunks", row(BASE, BATCH, TOKENS, processes), fields, None, True),
        (f"{processes // 2} processes", row(BASE, BATCH, TOKENS, processes // 2), fields, None, False),
        (f"{processes} processes, batch 1024 / 65536 tokens, switch interval 0.5 ms",
         row(BIG, 4 * BATCH, 2 * TOKENS, processes), big, 0.0005, False),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=150.0)
    parser.add_argument("--match", default="", help="run only the rows whose name contains this")
    parser.add_argument("--queries", type=int, default=100, help="queries x 100 documents for throughput")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    from crossenc.workloads import load_debian

    debian = load_debian()
    small, big = debian.subset(300, min(10, args.queries)).pairs(), debian.subset(300, args.queries).pairs()
    recorder = gpu_check.Recorder(args.out, gpu_check.run_environment(args.model, big))
    for name, factory, fields, interval, chunks in plan(args.model, gpu_check.TOKENIZER_PROCESSES):
        if args.match not in name:
            continue
        if time.perf_counter() - started > args.deadline:
            recorder.add({"name": name, "error": "skipped: deadline", "elapsed_s": 0})
            continue
        with switch_interval(interval), whole_chunks(chunks):
            row = gpu_check.run_row(name, factory, fields, small, big, args.reps, None, started)
        row.pop("scores", None)
        row["switch_interval_s"], row["whole_chunks"] = interval, chunks
        recorder.add(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
