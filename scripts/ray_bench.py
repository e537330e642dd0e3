"""`crossenc score` in-process vs on a local Ray instance with 1 and 2 actors: pairs/s and the
per-pair overhead of Ray, on Debian workload pairs (queries cycled to reach --pairs).

Each run is a fresh `python -m crossenc.cli score` process (what a user runs); the job time comes
from its --summary (read, load or start Ray and actors, score, write; not Python's start-up).

Run: python scripts/ray_bench.py [--pairs 100000] [--actors 1,2] [--out results/<device>]
Quick trial: python scripts/ray_bench.py --pairs 2000 --out /tmp/ray-bench
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from crossenc.bench.results import results_dir  # noqa: E402
from crossenc.paths import atomic_write  # noqa: E402
from crossenc.workloads import load_debian  # noqa: E402
from crossenc.hardware import fingerprint, physical_cores  # noqa: E402


def write_pairs(path: Path, count: int) -> None:
    """``count`` (qid, query, document) rows: every candidate of query 0, then query 1, ... cycling."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    workload = load_debian()
    rows = islice(((query.qid, query.query, document) for query in cycle(workload.queries)
                   for document in query.documents), count)
    qids, queries, documents = zip(*rows)
    pq.write_table(pa.table({"qid": list(qids), "query": list(queries), "document": list(documents)}), path)


def run_score(name: str, args: argparse.Namespace, work: Path, extra: list[str]) -> dict:
    output, summary = work / f"{name}.parquet", work / f"{name}-summary.json"
    command = [sys.executable, "-m", "crossenc.cli", "score", str(work / "pairs.parquet"), str(output),
               "--model", args.model, "--backend", args.backend, "--batch-size", str(args.batch_size),
               "--rows-per-call", str(args.rows_per_call), "--quiet", "--summary", str(summary), *(["--variant", args.variant] if args.variant else []), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"{name}: {' '.join(command[2:])}", file=sys.stderr)
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - started
    record = json.loads(summary.read_text())
    return {"name": name, "wall_s": wall, "job_s": record["seconds"], "first_output_s": record["first_output_s"],
            "pairs": record["scored"], "concurrency": record.get("concurrency"),
            "threads_per_actor": record.get("threads_per_actor"), "output": str(output)}


def compare_scores(reference: str, other: str) -> float:
    """Max abs score difference; also checks the rows are the same, in the same order."""
    import pyarrow.parquet as pq

    first, second = pq.read_table(reference), pq.read_table(other)
    if first.drop_columns(["score"]) != second.drop_columns(["score"]):
        raise SystemExit(f"{other}: rows differ from {reference} (order or content)")
    return float(np.max(np.abs(first.column("score").to_numpy() - second.column("score").to_numpy()), initial=0.0))


def markdown(result: dict) -> str:
    lines = [
        f"`crossenc score`, {result['pairs']:,} Debian pairs, model {result['model']} "
        f"({result['backend']}{':' + result['variant'] if result['variant'] else ''}), "
        f"{result['machine']['cpu_model']}, {result['machine']['physical_cores']} cores; {result['created']}",
        "",
        "| run | actors x threads | job s | first output s | pairs/s | overhead us/pair | max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        layout = "-" if row["concurrency"] is None else f"{row['concurrency']} x {row['threads_per_actor']}"
        lines.append(f"| {row['name']} | {layout} | {row['job_s']:.1f} | {row['first_output_s']:.1f} "
                     f"| {row['pairs_per_s']:.1f} | {row['overhead_us_per_pair']:+.0f} | {row['max_abs_diff']:.1e} |")
    lines += ["", "Overhead: (job s - in-process job s) / pairs. Job s: the command's own timing (read, load "
              "or start Ray and actors, score, write), without Python start-up.", "",
              f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--actors", default="1,2", help="comma list of Ray actor counts")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rows-per-call", type=int, default=2048, help="rows per scorer call / Ray block, all runs")
    parser.add_argument("--out", type=Path, default=None, help="folder for ray.{json,md} (default results/<device>)")
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory(prefix="ray-bench-") as folder:
        work = Path(folder)
        write_pairs(work / "pairs.parquet", args.pairs)
        rows = [run_score("in-process", args, work, [])]
        for actors in [int(count) for count in args.actors.split(",")]:
            rows.append(run_score(f"ray-{actors}-actor{'s' if actors > 1 else ''}", args, work,
                                  ["--ray", "local", "--concurrency", str(actors)]))
        baseline = rows[0]
        for row in rows:
            row["pairs_per_s"] = row["pairs"] / row["job_s"]
            row["overhead_us_per_pair"] = (row["job_s"] - baseline["job_s"]) / row["pairs"] * 1e6
            row["max_abs_diff"] = compare_scores(baseline["output"], row["output"])
        for row in rows:
            del row["output"]  # a temporary file
    result = {
        "schema_version": 1, "pairs": args.pairs, "model": args.model, "backend": args.backend,
        "variant": args.variant, "batch_size": args.batch_size, "rows_per_call": args.rows_per_call, "in_process_threads": physical_cores(),
        "machine": fingerprint("cpu"), "ray": ray.__version__, "torch": importlib.metadata.version("torch"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python scripts/ray_bench.py " + " ".join(sys.argv[1:]), "rows": rows,
    }
    folder = args.out or results_dir("cpu", REPO_ROOT / "results")
    atomic_write(folder / "ray.json", json.dumps(result, indent=2).encode())
    atomic_write(folder / "ray.md", markdown(result).encode())
    print(markdown(result))


if __name__ == "__main__":
    main()
