"""`crossenc bench-host`: what the host can feed a GPU, stage by stage, measured on this CPU.

On a GPU, MiniLM-size rerankers score pairs faster than one host tokenizes them, so the host's
pipeline (tokenize -> sort and cut batches -> pad -> pack) sets the ceiling. This measures each
stage in pairs/s, with the Rust tokenizer on one thread and on all of them (each in a child
process, since its thread pool is fixed at start), and writes results/<cpu-slug>/host.{json,md}.
Tokenization is measured with ``tokenizers`` and with the compiled engine (where it qualifies)
on the Debian workload and on a second kind of text (standard-library docstrings), next to the
device ceiling measured on a GPU (the best pre-tokenized row of a results/*/gpu_check.json).
No model is run: the numbers are the same whatever the GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_WORKLOAD = "debian:300:100"
SECOND_WORKLOAD = "docstrings:100:100"  # code documentation: a second kind of text
GPU_BATCH_SIZE = 256  # what gpu_check runs the packed rows with
GPU_MAX_TOKENS = 32768
TARGET_PAIRS_PER_S = 100_000  # issue 7's H100 goal for MiniLM-L6 on the Debian workload


def timed_calls(function: Callable[[], Any], repetitions: int) -> list[float]:
    """Seconds of ``repetitions`` calls of ``function`` after one untimed warm-up call."""
    function()  # warm: first calls allocate
    seconds = []
    for _ in range(repetitions):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


@functools.lru_cache(maxsize=8)
def load_pair_encoder(model: str | Path, split: bool = True, fast: bool = True):
    """``(PairEncoder, uses_token_type_ids)`` for a checkpoint, at CrossEncoder's default max length;
    ``fast=False``: texts through ``tokenizers`` only. Built once per process and kind: the stage and
    tokenization rows of one child share them (timed rows are best-of-N, so warm either way)."""
    from crossenc.model_source import resolve_model
    from crossenc.pair_encoding import PairEncoder
    from crossenc.tokenization import checkpoint_source, tokenizer_setup

    setup = tokenizer_setup(checkpoint_source(resolve_model(model))[0])
    if split and not fast:
        return PairEncoder(setup.tokenizer, setup.max_length, fast=False), setup.uses_token_type_ids
    return setup.pair_encoder(split), setup.uses_token_type_ids


def measure_tokenization(model: str, workload_spec: str, repetitions: int) -> dict[str, Any]:
    """pairs/s of each way of tokenizing ``workload_spec``'s pairs (split mode: each distinct text once)."""
    from crossenc.fast_tokenization import why_not_fast
    from crossenc.workloads import load_workload

    pairs = load_workload(workload_spec).pairs()
    hub, uses_types = load_pair_encoder(model, fast=False)
    fast, _ = load_pair_encoder(model)
    ways: dict[str, Callable[[], Any]] = {"tokenizers": lambda: hub.encode(pairs, uses_types)}
    if fast.engine != hub.engine:
        engine = fast.texts.fast

        def cold() -> None:
            engine.clear_cache()  # its per-word cache: as on texts never seen before
            fast.encode(pairs, uses_types)

        ways[f"{fast.engine}, cold cache"] = cold
        ways[fast.engine] = lambda: fast.encode(pairs, uses_types)
    rows = []
    for name, function in ways.items():
        best = min(timed_calls(function, repetitions))
        rows.append({"engine": name, "pairs_per_s": len(pairs) / best, "us_per_pair": best / len(pairs) * 1e6})
    return {"workload": workload_spec, "pairs": len(pairs), "rows": rows,
            "fast_engine": fast.engine if fast.engine != hub.engine else None,
            "why_not_fast": why_not_fast(fast.single) if fast.engine == hub.engine else ""}


def measure_stages(model: str, workload_spec: str, repetitions: int,
                   text_workloads: tuple[str, ...] = ()) -> dict[str, Any]:
    """pairs/s of every host stage in this process (its tokenizer thread pool as the environment set it),
    and of each tokenizer on ``workload_spec`` and ``text_workloads``."""
    from crossenc.batching import collate, collate_packed, plan_batches
    from crossenc.workloads import load_workload
    from crossenc.kernels.packing import pack_batch

    workload = load_workload(workload_spec)
    pairs = workload.pairs()
    split, uses_types = load_pair_encoder(model)
    hub_split, _ = load_pair_encoder(model, fast=False)
    joint, _ = load_pair_encoder(model, split=False)  # pair by pair, the way Hugging Face's call works
    encoded = split.encode(pairs, uses_types)
    plans = plan_batches(encoded.lengths, batch_size=GPU_BATCH_SIZE, max_tokens=GPU_MAX_TOKENS, is_padded=False)
    batches = [collate(encoded, indices, 0) for indices in plans]
    packed_batches = [collate_packed(encoded, indices) for indices in plans]
    per_query = [query.pairs() for query in workload.queries]

    stages: dict[str, Callable[[], Any]] = {
        "tokenize pairs (joint, as Hugging Face)": lambda: joint.encode(pairs, uses_types),
        "tokenize, each distinct text once (split, tokenizers)": lambda: hub_split.encode(pairs, uses_types),
        f"tokenize split, default ({split.engine})": lambda: split.encode(pairs, uses_types),
        "tokenize split, one rank() call per query": lambda: [split.encode(group, uses_types) for group in per_query],
        "plan batches (sort, token budget)": lambda: plan_batches(
            encoded.lengths, batch_size=GPU_BATCH_SIZE, max_tokens=GPU_MAX_TOKENS, is_padded=False
        ),
        "collate (pad), for padded backends": lambda: [collate(encoded, indices, 0) for indices in plans],
        "pack a padded batch (drop padding)": lambda: [pack_batch(batch, "absolute", 0) for batch in batches],
        "collate packed, for packed backends": lambda: [collate_packed(encoded, indices) for indices in plans],
        "pack a packed batch (positions, cu_seqlens)": lambda: [
            pack_batch(batch, "absolute", 0) for batch in packed_batches
        ],
    }
    rows = []
    for name, function in stages.items():
        seconds = timed_calls(function, repetitions)
        best, median = min(seconds), statistics.median(seconds)
        rows.append({"stage": name, "pairs_per_s": len(pairs) / best, "us_per_pair": best / len(pairs) * 1e6,
                     "median_us_per_pair": median / len(pairs) * 1e6})
    texts = {text for pair in pairs for text in pair}
    return {
        "rayon_threads": os.environ.get("RAYON_NUM_THREADS", "all"),
        "pairs": len(pairs),
        "distinct_texts": len(texts),
        "tokens_mean": float(encoded.lengths.mean()),
        "engine": split.engine,
        "rows": rows,
        "tokenization": [measure_tokenization(model, spec, repetitions) for spec in (workload_spec, *text_workloads)],
    }


def measure_feeding(model: str, workload_spec: str, repetitions: int, processes: list[int]) -> list[dict[str, Any]]:
    """Tokenize the workload in 2048-pair chunks as CrossEncoder feeds a GPU: in-process vs worker processes.

    What tokenizing takes from the scoring process's GIL (padding, packing and launching need
    it): in-process, the calling thread's CPU time (``scoring_thread_cpu_us_per_pair``; the Rust
    threads run without the GIL); with worker processes, all of this process's CPU time
    (``process_cpu_us_per_pair``: pickling texts out and arrays back, on the executor's threads).
    """
    from crossenc.workloads import load_workload
    from crossenc.tokenize_ahead import DEFAULT_CHUNK_PAIRS, TokenizeAhead
    from crossenc.tokenizer_processes import TokenizerProcesses, process_chunk_pairs

    pairs = load_workload(workload_spec).pairs()
    encoder, uses_types = load_pair_encoder(model)
    rows = []
    for count in [0, *processes]:
        pool = TokenizerProcesses(encoder, count, uses_types) if count else None
        chunk = process_chunk_pairs(len(pairs), max(count, 1), GPU_BATCH_SIZE, DEFAULT_CHUNK_PAIRS)  # as CrossEncoder

        def consume() -> None:
            if pool is None:
                for offset in range(0, len(pairs), DEFAULT_CHUNK_PAIRS):
                    encoder.encode(pairs[offset : offset + DEFAULT_CHUNK_PAIRS], uses_types)
                return
            for _ in TokenizeAhead(pool.encode, pairs, chunk, executor=pool.executor, depth=2 * count):
                pass

        try:
            if pool is not None:
                pool.warm_up()
            consume()
            walls, thread_cpu, process_cpu = [], [], []  # medians (the stages' table takes the best)
            for _ in range(repetitions):
                wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
                consume()
                thread_cpu.append(time.thread_time() - thread)
                process_cpu.append(time.process_time() - process)
                walls.append(time.perf_counter() - wall)
            workers = worker_facts(pool, pairs, uses_types, count, chunk) if pool is not None else None
        finally:
            if pool is not None:
                pool.close()
        rows.append({
            "workers": workers,
            "tokenizer_processes": count,
            "rayon_threads": os.environ.get("RAYON_NUM_THREADS", "all"),
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset"),
            "pairs_per_s": len(pairs) / statistics.median(walls),
            "scoring_thread_cpu_us_per_pair": statistics.median(thread_cpu) / len(pairs) * 1e6,
            "process_cpu_us_per_pair": statistics.median(process_cpu) / len(pairs) * 1e6,
        })
    return rows


def worker_facts(pool, pairs: list, uses_types: bool, count: int, chunk: int) -> dict[str, Any]:
    """One pass over the same ``chunk``-pair chunks, each worker timing itself: are the workers slow, or idle?

    ``worker_pairs_per_s``: pairs per second of encoding time (slow workers show here);
    ``chunk_cpu_over_wall`` near 1: each chunk had a core to itself; ``peak_concurrency``: most chunks
    being encoded at the same moment (``min(count, chunks)`` when the workers really run in parallel);
    ``first_start_ms``: from the pass's start to the first chunk's start (delivery delay).
    """
    from crossenc.tokenizer_processes import timed_encode_in_worker

    chunks = [pairs[offset : offset + chunk] for offset in range(0, len(pairs), chunk)]
    if not chunks:
        return {"error": "no pairs"}
    encode = functools.partial(timed_encode_in_worker, use_token_type_ids=uses_types)
    try:
        start = time.monotonic()
        facts = [fact for _, fact in pool.executor.map(encode, chunks)]
        wall = time.monotonic() - start
    except Exception as error:  # a diagnostic: never lose the row's measurement to it
        return {"error": f"{type(error).__name__}: {error}"}
    busy = sum(fact["end"] - fact["start"] for fact in facts)
    events = sorted([(fact["start"], 1) for fact in facts] + [(fact["end"], -1) for fact in facts])
    running = peak = 0
    for _, change in events:  # ends sort before starts at equal times: touching chunks do not overlap
        running += change
        peak = max(peak, running)
    return {
        "chunks": len(chunks),
        "pairs_per_chunk": chunk,
        "pass_wall_s": wall,
        "distinct_workers": len({fact["pid"] for fact in facts}),
        "cpus_allowed": sorted({fact["cpus_allowed"] for fact in facts if fact["cpus_allowed"] is not None}),
        "worker_pairs_per_s": len(pairs) / max(busy, 1e-9),
        "chunk_cpu_over_wall": sum(fact["cpu_s"] for fact in facts) / max(busy, 1e-9),
        "peak_concurrency": peak,
        "first_start_ms": (min(fact["start"] for fact in facts) - start) * 1e3,
    }


def run_children(model: str, workload_spec: str, repetitions: int, threads: list[int],
                 text_workloads: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One child process per tokenizer thread count (Rayon reads RAYON_NUM_THREADS once)."""
    results = []
    for count in threads:
        env = {**os.environ, "RAYON_NUM_THREADS": str(count), "TOKENIZERS_PARALLELISM": "true"}
        command = [sys.executable, "-m", "crossenc.bench.host_pipeline", "--child", "--model", model,
                   "--workload", workload_spec, "--repetitions", str(repetitions),
                   "--second-workload", ",".join(text_workloads)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"host stage child ({count} threads) failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    header = "| stage | " + " | ".join(f"pairs/s, RAYON_NUM_THREADS={run['rayon_threads']}" for run in runs) + " |"
    lines = [
        f"# Host pipeline: {result['machine']['cpu_model']}, {result['machine']['physical_cores']} physical cores",
        "",
        f"Workload {result['workload']}: {runs[0]['pairs']} pairs, {runs[0]['distinct_texts']} distinct texts, "
        f"{runs[0]['tokens_mean']:.0f} tokens per pair. Command: `{result['command']}`. {result['created']}.",
        "",
        header,
        "|---|" + "---:|" * len(runs),
    ]
    for index, row in enumerate(runs[0]["rows"]):
        lines.append(f"| {row['stage']} | " + " | ".join(f"{run['rows'][index]['pairs_per_s']:,.0f}" for run in runs) + " |")
    lines += [
        "",
        "Feeding a GPU (chunks as `CrossEncoder(tokenizer_processes=N)` cuts them at batch size 256; 0 = in this "
        "process, 2048-pair chunks, "
        f"Rust threads: {result['feeding'][0]['rayon_threads']}). Worker processes help only with spare cores:",
        "",
        "| tokenizer processes | pairs/s | GIL-side CPU in the scoring process, us/pair |",
        "|---:|---:|---:|",
    ]
    for row in result["feeding"]:
        gil_side = row["process_cpu_us_per_pair" if row["tokenizer_processes"] else "scoring_thread_cpu_us_per_pair"]
        lines.append(f"| {row['tokenizer_processes']} | {row['pairs_per_s']:,.0f} | {gil_side:.2f} |")
    lines += ["", "GIL-side CPU: in-process, the calling thread's CPU time (the Rust threads run without the GIL); "
              "with workers, all of this process's CPU time (pickling texts out and arrays back)."]
    timed = [row for row in result["feeding"] if row.get("workers") and "error" not in row["workers"]]
    if timed:
        lines += ["", "Workers timing themselves over one more pass (encoding only; unpickling texts and pickling "
                  "arrays are outside it). Slow workers show in pairs/s per worker; idle ones in the peak number of "
                  "chunks encoded at once (min(workers, chunks) if they run in parallel) and the first chunk's "
                  "delay:", "",
                  "| tokenizer processes | chunks x pairs | distinct workers | CPUs allowed | pairs/s per worker "
                  "| chunk CPU/wall | peak chunks at once | first chunk after, ms | pass wall, ms |",
                  "|---:|---|---:|---|---:|---:|---:|---:|---:|"]
        for row in timed:
            facts = row["workers"]
            lines.append(
                f"| {row['tokenizer_processes']} | {facts['chunks']} x {facts['pairs_per_chunk']} | "
                f"{facts['distinct_workers']} | {facts['cpus_allowed']} | {facts['worker_pairs_per_s']:,.0f} | "
                f"{facts['chunk_cpu_over_wall']:.2f} | {facts['peak_concurrency']} | {facts['first_start_ms']:.0f} | "
                f"{facts['pass_wall_s'] * 1e3:.0f} |"
            )
    lines += ["", *tokenization_markdown(result)]
    return "\n".join(lines) + "\n"


def tokenization_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (workload, engine): pairs/s at each thread count, and x ``tokenizers`` on one thread."""
    runs = result["runs"]
    table = []
    for index, first in enumerate(runs[0].get("tokenization", [])):
        base = {run["rayon_threads"]: run["tokenization"][index]["rows"][0]["pairs_per_s"] for run in runs}
        for row_index, row in enumerate(first["rows"]):
            speeds = {run["rayon_threads"]: run["tokenization"][index]["rows"][row_index]["pairs_per_s"] for run in runs}
            table.append({"workload": first["workload"], "engine": row["engine"], "pairs_per_s": speeds,
                          "x_tokenizers": {threads: speed / base[threads] for threads, speed in speeds.items()}})
    return table


def default_engine_speed(result: dict[str, Any], threads: str) -> tuple[str, float] | None:
    """(engine, pairs/s) of the default tokenization (warm) on the main workload at ``threads``."""
    for run in result["runs"]:
        if run["rayon_threads"] == threads and run.get("tokenization"):
            main = run["tokenization"][0]
            engine = main["fast_engine"] or "tokenizers"
            row = next(row for row in main["rows"] if row["engine"] == engine)
            return engine, row["pairs_per_s"]
    return None


def ceiling_verdict(result: dict[str, Any], threads: str) -> str:
    """Which side bounds a GPU host at ``threads`` tokenizer threads: one sentence."""
    ceiling = result.get("device_ceiling")
    speed = default_engine_speed(result, threads)
    if not ceiling or not speed:
        return ""
    engine, pairs_per_s = speed
    share = pairs_per_s / ceiling["pairs_per_s"]
    side = "the device bounds" if share >= 1 else "the host's tokenizer bounds"
    return (f"{threads} thread(s), {engine}: {pairs_per_s:,.0f} pairs/s = {share:.2f}x the device ceiling: {side} "
            f"({ceiling['pairs_per_s'] / pairs_per_s:.1f} such cores feed it).")


def tokenization_markdown(result: dict[str, Any]) -> list[str]:
    table = tokenization_table(result)
    if not table:
        return []
    threads = [run["rayon_threads"] for run in result["runs"]]
    lines = ["## Tokenization, per core and at N cores", "",
             "Split mode (each distinct text once, pairs assembled in numpy), ids identical to Hugging Face's pair "
             "call; `cold cache`: the engine's per-word cache cleared before every call.", "",
             "| workload | engine | " + " | ".join(f"pairs/s, {count} thread(s)" for count in threads)
             + " | x tokenizers, " + threads[0] + " thread(s) |",
             "|---|---|" + "---:|" * (len(threads) + 1)]
    for row in table:
        lines.append(f"| {row['workload']} | {row['engine']} | "
                     + " | ".join(f"{row['pairs_per_s'][count]:,.0f}" for count in threads)
                     + f" | {row['x_tokenizers'][threads[0]]:.1f} |")
    missing = [entry["why_not_fast"] for entry in result["runs"][0]["tokenization"] if entry["why_not_fast"]]
    if missing:
        lines += ["", f"No compiled engine: {missing[0]}."]
    ceiling = result.get("device_ceiling")
    if ceiling:
        lines += ["", f"Device ceiling: {ceiling['pairs_per_s']:,.0f} pairs/s ({ceiling['source']}).", ""]
        lines += [f"- {ceiling_verdict(result, count)}" for count in threads if ceiling_verdict(result, count)]
    return lines


def device_ceiling(value: str | None, root: Path | None = None) -> dict[str, Any] | None:
    """pairs/s the device scores when pairs come tokenized: ``value``, else the best pre-tokenized row of
    ``results/*/gpu_check*.json`` (None when there is none)."""
    if value:
        return {"pairs_per_s": float(value), "source": "--device-ceiling"}
    from crossenc.bench.results import RESULTS_ROOT

    best = None
    for path in sorted((root or RESULTS_ROOT).glob("*/gpu_check*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for row in record.get("rows", []):
            if "pre-tokenized" in row.get("name", "") and not row.get("error") and row.get("pairs_per_s"):
                if best is None or row["pairs_per_s"] > best["pairs_per_s"]:
                    gpu = record.get("environment", {}).get("gpu", path.parent.name)
                    best = {"pairs_per_s": float(row["pairs_per_s"]), "source": f"{gpu}, {row['name']}, {path}"}
    return best


def terminal_summary(result: dict[str, Any]) -> str:
    """The tokenization table and the ceiling, within 80 columns (host.md has every stage)."""
    threads = [run["rayon_threads"] for run in result["runs"]]
    table = tokenization_table(result)
    cells = "".join(f"{count + ' thr':>12}" for count in threads)
    lines = [f"Host tokenization, pairs/s ({result['machine']['cpu_model'][:40]}, "
             f"{result['machine']['physical_cores']} cores)", f"{'workload':<20}{'engine':<24}{cells}"]
    for row in table:
        lines.append(f"{row['workload'][:19]:<20}{row['engine'][:23]:<24}"
                     + "".join(f"{row['pairs_per_s'][count]:>12,.0f}" for count in threads))
    ceiling = result.get("device_ceiling")
    if ceiling:
        lines.append(f"Device ceiling (pre-tokenized, on a GPU): {ceiling['pairs_per_s']:,.0f} pairs/s")
        for count in threads:
            speed = default_engine_speed(result, count)
            if speed:
                share = speed[1] / ceiling["pairs_per_s"]
                side = "device bounds" if share >= 1 else "host tokenizer bounds"
                lines.append(f"  {count} thread(s), {speed[0]}: {share:.2f}x the ceiling: {side}")
    missing = [entry["why_not_fast"] for entry in result["runs"][0].get("tokenization", []) if entry["why_not_fast"]]
    if missing:
        lines.append(f"No compiled engine: {missing[0]}"[:80])
    return "\n".join(line[:80] for line in lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model folder or 'demo' (only its tokenizer is used)")
    parser.add_argument("--workload", default=DEFAULT_WORKLOAD)
    parser.add_argument("--second-workload", default=SECOND_WORKLOAD,
                        help="comma list of workloads also tokenized ('' for none; default: stdlib docstrings)")
    parser.add_argument("--device-ceiling", default=None,
                        help="pairs/s the device scores pre-tokenized (default: best pre-tokenized row of "
                        "results/*/gpu_check.json)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", default=None, help="comma list of tokenizer thread counts (default 1,<all>)")
    parser.add_argument("--processes", default=None, help="comma list of tokenizer process counts (default <all>)")
    parser.add_argument("--out", default=None, help="results folder (default results/<cpu-slug>)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from crossenc.demo import expand_alias

    model = expand_alias(args.model)
    text_workloads = tuple(spec for spec in args.second_workload.split(",") if spec)
    if args.child:
        print(json.dumps(measure_stages(model, args.workload, args.repetitions, text_workloads)))
        return 0
    from crossenc.bench.results import results_dir
    from crossenc.paths import atomic_write
    from crossenc.hardware import fingerprint

    threads = [int(value) for value in args.threads.split(",")] if args.threads else sorted({1, os.cpu_count() or 1})
    processes = [int(value) for value in args.processes.split(",")] if args.processes else [os.cpu_count() or 1]
    if any(count <= 0 for count in threads + processes):
        raise SystemExit(f"error: --threads and --processes take positive integers, got {args.threads} / {args.processes}")
    result = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["crossenc", "bench-host", *getattr(args, "command_line", _own_arguments(sys.argv))]),
        "machine": fingerprint("cpu"),
        "workload": args.workload,
        "runs": run_children(model, args.workload, args.repetitions, threads, text_workloads),
        "feeding": measure_feeding(model, args.workload, args.repetitions, processes),
        "device_ceiling": device_ceiling(args.device_ceiling),
    }
    text = markdown(result)
    print(terminal_summary(result))
    if not args.no_write:
        folder = Path(args.out) if args.out else results_dir("cpu")
        atomic_write(folder / "host.json", (json.dumps(result, indent=2) + "\n").encode())
        atomic_write(folder / "host.md", text.encode())
        print(f"wrote {folder / 'host.json'}, {folder / 'host.md'} (every stage)", file=sys.stderr)
    return 0


def _own_arguments(argv: list[str]) -> list[str]:
    """The arguments after ``bench-host`` (``crossenc bench-host ...``) or after the module path."""
    return argv[argv.index("bench-host") + 1 :] if "bench-host" in argv else argv[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crossenc bench-host", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = list(argv) if argv is not None else sys.argv[1:]
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
