"""Load-test `crossenc serve` on loopback: throughput and latency of /rerank at 1, 8 and 32 clients.

Requests are Debian queries 300-399, each with 20-100 of its candidate documents. The same
requests are also scored one by one through the Python API (``encoder.rank``), all their pairs
in one offline ``predict`` call (the ceiling), and optionally sent to an infinity server started
separately (``--infinity-url``). Every phase stops at ``--requests`` requests or ``--duration``
seconds, whichever comes first. Writes results/<device>/serve.{json,md}.

Run: python scripts/serve_load.py --model demo --variant sdpa [--infinity-url http://127.0.0.1:7997]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from crossenc.bench.results import results_dir
from crossenc.paths import atomic_write
from crossenc.workloads import EVAL_START, load_debian
from crossenc.hardware import fingerprint

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
Request = tuple[str, list[str]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", help="folder, Hub id or 'demo' (default)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--queries", type=int, default=100, help="Debian queries from 300 (at most 100)")
    parser.add_argument("--min-docs", type=int, default=20)
    parser.add_argument("--max-docs", type=int, default=100)
    parser.add_argument("--concurrency", default="1,8,32", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=100, help="requests per phase at most")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase at most")
    parser.add_argument("--url", default=None, help="a running crossenc server (default: start one)")
    parser.add_argument("--infinity-url", default=None, help="also load an infinity server's /rerank")
    parser.add_argument("--infinity-model", default=None, help="the 'model' field infinity wants, if any")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: results/<device>)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    if not 1 <= args.min_docs <= args.max_docs <= 100 or not 1 <= args.queries <= 100:
        parser.error("need 1 <= --min-docs <= --max-docs <= 100 and 1 <= --queries <= 100")
    for url in (args.url, args.infinity_url):
        if url and urlparse(url).hostname not in LOOPBACK:
            parser.error(f"{url}: this load generator only talks to loopback addresses")
    return args


def tei_body(query: str, documents: list[str]) -> dict:
    """TEI's /rerank body; truncate=true as encoder.rank does (TEI's default refuses overlong pairs)."""
    return {"query": query, "texts": documents, "truncate": True}


def build_requests(queries: int, min_docs: int, max_docs: int, seed: int = 0) -> list[Request]:
    rng = random.Random(seed)
    workload = load_debian().subset(EVAL_START, queries)
    requests = []
    for query in workload.queries:
        chosen = sorted(rng.sample(range(len(query.documents)), rng.randint(min_docs, max_docs)))
        requests.append((query.query, [query.documents[index] for index in chosen]))
    return requests


# ---------------------------------------------------------------------- HTTP load
async def run_load(url: str, body, requests: list[Request], clients: int, limit: int, duration: float) -> dict:
    """``clients`` loops sending requests in turn until ``limit`` are sent or ``duration`` has passed."""
    latencies: list[float] = []
    errors: list[str] = []
    sent_pairs = 0
    next_index = 0
    deadline = time.perf_counter() + duration

    async def client(session: httpx.AsyncClient) -> None:
        nonlocal next_index, sent_pairs
        while next_index < limit and time.perf_counter() < deadline:
            query, documents = requests[next_index % len(requests)]
            next_index += 1
            started = time.perf_counter()
            try:
                reply = await session.post(url, json=body(query, documents))
                reply.raise_for_status()
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            latencies.append(time.perf_counter() - started)
            sent_pairs += len(documents)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return row_of(latencies, sent_pairs, seconds, errors)


def row_of(latencies: list[float], pairs: int, seconds: float, errors: list[str] = ()) -> dict:
    milliseconds = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    p50, p95, p99 = np.percentile(milliseconds, [50, 95, 99])
    return {
        "requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
        "pairs": pairs, "seconds": seconds, "pairs_per_s": pairs / seconds if seconds else None,
        "requests_per_s": len(latencies) / seconds if seconds else None,
        "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
    }


def merged_calls(metrics_url: str) -> tuple[float, float]:
    """(requests, merged calls) so far, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=30).text):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values.get("crossenc_batch_requests_sum", 0.0), values.get("crossenc_batch_requests_count", 0.0)


def load_phases(name: str, url: str, body, requests: list[Request], args, metrics_url: str | None) -> list[dict]:
    rows = []
    asyncio.run(run_load(url, body, requests, 2, 4, args.duration))  # warm-up: connections, first batches
    for clients in [int(value) for value in args.concurrency.split(",")]:
        before = merged_calls(metrics_url) if metrics_url else None
        row = asyncio.run(run_load(url, body, requests, clients, args.requests, args.duration))
        if before is not None:
            after = merged_calls(metrics_url)
            calls = after[1] - before[1]
            row["requests_per_call"] = (after[0] - before[0]) / calls if calls else None
        rows.append({"target": name, "clients": clients, **row})
    return rows


# ---------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def crossenc_server(args, max_documents: int, max_queue_pairs: int):
    """A `crossenc serve` subprocess on a free loopback port, or the one at --url."""
    if args.url:
        yield args.url.rstrip("/")
        return
    port = free_port()
    command = [sys.executable, "-m", "crossenc.cli", "serve", args.model, "--backend", args.backend,
               "--device", args.device, "--port", str(port), "--max-documents", str(max_documents),
               "--max-queue-pairs", str(max_queue_pairs), "--request-timeout", "600"]
    if args.variant:
        command += ["--variant", args.variant]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise SystemExit(f"error: the server exited:\n{process.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("error: the server did not become healthy in 600 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(60)


# ---------------------------------------------------------------------- in-process baselines
def python_phases(args, requests: list[Request]) -> tuple[list[dict], object]:
    from crossenc import CrossEncoder
    from crossenc.demo import expand_alias

    encoder = CrossEncoder(expand_alias(args.model), backend=args.backend, variant=args.variant,
                           device=args.device)
    encoder.rank(*requests[0])  # warm-up
    latencies, pairs = [], 0
    started = time.perf_counter()
    for index in range(args.requests):
        if time.perf_counter() - started > args.duration:
            break
        query, documents = requests[index % len(requests)]
        request_started = time.perf_counter()
        encoder.rank(query, documents)
        latencies.append(time.perf_counter() - request_started)
        pairs += len(documents)
    one_by_one = row_of(latencies, pairs, time.perf_counter() - started)
    sent = [requests[index % len(requests)] for index in range(len(latencies))]
    all_pairs = [(query, document) for query, documents in sent for document in documents]
    started = time.perf_counter()
    encoder.predict(all_pairs)
    offline = row_of([time.perf_counter() - started], len(all_pairs), time.perf_counter() - started)
    offline.update(p50_ms=None, p95_ms=None, p99_ms=None, requests=None, requests_per_s=None)
    rows = [{"target": "python rank, one by one", "clients": 1, **one_by_one},
            {"target": "python predict, all pairs", "clients": 1, **offline}]
    return rows, encoder


def score_check(url: str, encoder, request: Request) -> float:
    """Max |server score - encoder.rank score| on one request (the server must agree with the API)."""
    query, documents = request
    served = httpx.post(f"{url}/rerank", json=tei_body(query, documents), timeout=600).json()
    direct = {entry["corpus_id"]: entry["score"] for entry in encoder.rank(query, documents)}
    return max(abs(entry["score"] - direct[entry["index"]]) for entry in served)


# ---------------------------------------------------------------------- report
def markdown(record: dict) -> str:
    lines = [
        f"Serving load: {record['workload']}; model {record['model']} ({record['backend']} "
        f"{record['variant']}, {record['device']}); {record['date']}",
        "",
        "| target | clients | requests | pairs/s | requests/s | p50 / p95 / p99 ms | req per call | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        latency = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.0f} / {row['p95_ms']:.0f} / {row['p99_ms']:.0f}"
        merged = row.get("requests_per_call")
        lines.append(
            f"| {row['target']} | {row['clients']} | {row['requests'] or '-'} | {row['pairs_per_s']:.1f} | "
            f"{'-' if row['requests_per_s'] is None else format(row['requests_per_s'], '.2f')} | {latency} | "
            f"{'-' if merged is None else format(merged, '.1f')} | {row['errors']} |"
        )
    lines += ["", f"Server vs `encoder.rank` on one request: max abs score difference "
                  f"{record['max_abs_diff_vs_rank']:.1e}.", f"Command: `{record['command']}`"]
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict]) -> None:
    print(f"{'target':<28}{'clients':>8}{'pairs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/call':>9}{'err':>5}")
    for row in rows:
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.0f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.0f}"
        merged = row.get("requests_per_call")
        print(f"{row['target'][:27]:<28}{row['clients']:>8}{row['pairs_per_s']:>9.1f}{p50:>9}{p99:>9}"
              f"{'-' if merged is None else format(merged, '.1f'):>9}{row['errors']:>5}")


def main() -> None:
    args = parse_args()
    requests = build_requests(args.queries, args.min_docs, args.max_docs)
    most_clients = max(int(value) for value in args.concurrency.split(","))
    with crossenc_server(args, args.max_docs, max(4096, most_clients * args.max_docs)) as url:  # no 429s
        info = httpx.get(f"{url}/info", timeout=30).json()
        rows = load_phases("crossenc serve /rerank", f"{url}/rerank", tei_body, requests, args, f"{url}/metrics")
        python_rows, encoder = python_phases(args, requests)  # the server idles meanwhile
        difference = score_check(url, encoder, requests[0])
    rows += python_rows
    if args.infinity_url:
        extra = {"model": args.infinity_model} if args.infinity_model else {}
        body = lambda query, documents: {"query": query, "documents": documents, **extra}  # noqa: E731
        rows += load_phases("infinity /rerank", f"{args.infinity_url.rstrip('/')}/rerank", body, requests, args, None)
    record = {
        "schema_version": 1, "kind": "serve_load",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python scripts/serve_load.py " + " ".join(sys.argv[1:]),
        "workload": f"debian[{EVAL_START}:{EVAL_START + args.queries}] x {args.min_docs}-{args.max_docs} documents",
        "model": args.model, "backend": info.get("backend"), "variant": info.get("variant"),
        "device": info.get("device"), "precision": info.get("precision"), "server": info.get("server"),
        "limits": {"requests": args.requests, "duration_s": args.duration}, "machine": fingerprint(args.device),
        "max_abs_diff_vs_rank": difference, "rows": rows,
    }
    print_table(rows)
    if not args.no_write:
        folder = args.out or results_dir(args.device)
        atomic_write(folder / "serve.json", json.dumps(record, indent=1).encode())
        atomic_write(folder / "serve.md", markdown(record).encode())
        print(f"wrote {folder}/serve.json and serve.md")


if __name__ == "__main__":
    main()
