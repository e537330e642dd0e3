"""Per-family bench: `crossenc bench`'s rows for a mid-size random checkpoint of every reranker family.

Each family gets MiniLM-L6's shape (6 layers, hidden 384, 12 heads; tests/families.py MID_SIZE) and a
30,522-token vocabulary of its own kind (WordPiece, byte-level BPE, Unigram) trained on the Debian
training file, so Debian pairs tokenize into realistic lengths. The weights are random: the speed
ratios are what this measures; the tiers say how far each precision moves these random scores.
Every family runs in the same process as its sentence-transformers torch fp32 row.

Writes results/<device>/families.{json,md}.
Run: python scripts/bench_families.py [--families bert,qwen3] [--workload debian-bm25:300:5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crossenc.bench.harness import REFERENCE_LABEL, BenchConfig, BenchRow, run_bench  # noqa: E402
from crossenc.bench.results import TIER_NAMES, TIER_ORDER, accuracy_tier, results_dir  # noqa: E402
from crossenc.logs import QUIET, VERBOSE, cli_logging  # noqa: E402
from crossenc.paths import atomic_write, cache_dir  # noqa: E402
from crossenc.workloads import load_workload  # noqa: E402
from tests.families import CHECKPOINTS, FAMILIES, MID_SIZE, TrainedVocabulary, build_family_model  # noqa: E402

TRAIN_FILE = ROOT.parent / "shared" / "data" / "debian-train.jsonl.gz"
# Left out to keep ten families within ~30 min on 2 cores: compile (minutes of warm-up), torch and ONNX
# int8 (slower than OpenVINO int8 and outside the int8 tier on the demo, results/*/bench.md), ONNX plain
# (the same graph as optimized, unfused).
VARIANTS = ["torch:eager", "torch:sdpa", "torch:packed", "torch:bf16", "onnx:optimized",
            "openvino:fp32", "openvino:bf16", "openvino:int8"]
PRECISIONS = ("fp32", "bf16", "int8")


def training_texts(path: Path) -> list[str]:
    """Queries and descriptions of the public training half (never the evaluation queries 300-399)."""
    texts: list[str] = []
    with gzip.open(path, "rt") as stream:
        for line in stream:
            record = json.loads(line)
            texts += [record["query"], record["positive"]]
    return texts


def row_summary(row: dict[str, Any]) -> dict[str, Any]:
    quality = row.get("quality") or {}
    return {
        "label": row["label"],
        "status": row["status"],
        "error": row["error"],
        "pairs_per_s": (row.get("throughput") or {}).get("pairs_per_s"),
        "x_st_fp32": row.get("ratio_vs_reference"),
        "spearman": quality.get("spearman"),
        "top10": quality.get("top10_agreement"),
        "max_abs": quality.get("max_abs_error"),
        "tier": accuracy_tier(quality) if row["status"] == "ok" and row["engine"] == "crossenc" else None,
        "last_layer": (row.get("info") or {}).get("details", {}).get("last_layer"),
    }


def fastest(rows: list[dict[str, Any]], precision: str) -> dict[str, Any] | None:
    """The fastest crossenc row computing in ``precision``, with its agreement and tier."""
    rows = [r for r in rows if r["status"] == "ok" and r["engine"] == "crossenc" and r["precision"] == precision]
    if not rows:
        return None
    best = max(rows, key=lambda row: row["throughput"]["pairs_per_s"])
    return row_summary(best)


def first_token_gain(folder: Path, workload, device: str) -> dict[str, Any]:
    """torch sdpa with the first-token last layer against the same variant with it turned off, one process."""
    from crossenc import CrossEncoder
    from crossenc.bench.measure import measure_throughput

    pairs, rates, note = workload.pairs(), {}, None
    for first_token in (True, False):
        encoder = CrossEncoder(str(folder), backend="torch", variant="sdpa", device=device,
                               backend_kwargs={"first_token": first_token})
        if first_token:
            note = encoder.info()["details"]["last_layer"]
            if note != "first token only":
                return {"last_layer": note}

        def score(batch, encoder=encoder):
            return encoder.predict_logits(batch, batch_size=32)[:, 0]

        rates[first_token] = measure_throughput(score, pairs, 0, 1)[0].pairs_per_s
    return {"last_layer": note, "first_token_pairs_per_s": rates[True], "all_tokens_pairs_per_s": rates[False],
            "speedup": rates[True] / rates[False]}


def family_result(family: str, result: dict[str, Any], gain: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    reference = next((r for r in rows if r["label"] == REFERENCE_LABEL and r["status"] == "ok"), None)
    return {
        "family": family,
        "checkpoints": CHECKPOINTS[family],
        "tokens_mean": result["workload"]["tokens_mean"],
        "st_fp32_pairs_per_s": reference["throughput"]["pairs_per_s"] if reference else None,
        "fastest": {precision: fastest(rows, precision) for precision in PRECISIONS},
        "first_token": gain,
        "rows": [row_summary(row) for row in rows],
    }


def _cell(chosen: dict[str, Any] | None, precision: str) -> str:
    if chosen is None:
        return "-"
    if precision == "fp32":
        agreement = ""
    elif chosen["tier"] == "exact":
        agreement = " (exact)"
    else:
        agreement = f" ({chosen['spearman']:.3f} / {chosen['top10']:.3f}, {chosen['tier']})"  # 0.986 is not 0.99
    return f"{chosen['label']} **{chosen['x_st_fp32']:.2f}x**{agreement}"


def _gain(gain: dict[str, Any]) -> str:
    """torch sdpa's speed-up from the first-token last layer, or why the family runs all tokens."""
    if "speedup" in gain:
        return f"{gain['speedup']:.2f}x"
    return gain["last_layer"].removeprefix("all tokens (").removesuffix(")")


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"# Reranker families on {payload['device']}: fastest variant per precision",
        "",
        f"`{payload['command']}`; {payload['created']}; workload {payload['workload']} "
        f"({payload['pairs']} pairs, one timed pass per row). Random weights in MiniLM-L6's shape "
        "(6 layers, hidden 384, 12 heads) with a 30,522-token vocabulary of each family's kind trained on "
        "the Debian training file. Ratios are to sentence-transformers torch fp32 measured in the same "
        "process for the same checkpoint. Agreement (Spearman / top-10 per query) and tier are against torch "
        f"eager fp32 ({'; '.join(TIER_NAMES[name] for name in TIER_ORDER)}). Random weights leave "
        "many near-ties among a query's scores, so bf16 and int8 reorder more here than on a trained "
        "reranker (the demo's tiers: bench.md); read those columns as speed, their tiers as a lower bound. "
        "First-token gain: torch sdpa with the last layer run for the first token only, over the same variant "
        "with `backend_kwargs={'first_token': False}`, same process.",
        "",
        "| family | tokens/pair | ST fp32 pairs/s | fastest fp32 | fastest bf16 | fastest int8 | first-token gain |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for entry in payload["families"]:
        st = entry["st_fp32_pairs_per_s"]
        cells = [_cell(entry["fastest"][name], name) for name in PRECISIONS] if st else ["-"] * len(PRECISIONS)
        lines.append(f"| {entry['family']} | {entry['tokens_mean']:.0f} | {f'{st:.1f}' if st else '-'} | "
                     + " | ".join([*cells, _gain(entry["first_token"])]) + " |")
    lines += ["", "## Every row", "",
              "| family | variant | pairs/s | x ST fp32 | Spearman | top-10 | tier | last layer |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    refusals = []
    for entry in payload["families"]:
        for row in entry["rows"]:
            if row["status"] != "ok":
                refusals.append(f"- {entry['family']}, {row['label']}: {row['error']}")
                continue
            ratio = f"{row['x_st_fp32']:.2f}" if row["x_st_fp32"] else "-"
            spearman = f"{row['spearman']:.4f}" if row["spearman"] is not None else "-"
            top10 = f"{row['top10']:.3f}" if row["top10"] is not None else "-"
            lines.append(f"| {entry['family']} | {row['label']} | {row['pairs_per_s']:.1f} | {ratio} | {spearman} | "
                         f"{top10} | {row['tier'] or '-'} | {row['last_layer'] or '-'} |")
    if refusals:
        lines += ["", "Rows not measured (refused at load time, with the reason):", "", *refusals]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--workload", default="debian-bm25:300:5", help="default: 5 queries, 500 pairs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=None, help="results folder (default results/<device>)")
    parser.add_argument("--update", action="store_true",
                        help="re-measure only --families and keep the other families' entries of the existing file")
    parser.add_argument("--retier", action="store_true",
                        help="measure nothing: re-derive the tiers of the existing file from its numbers")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.retier:
        return retier(args.out or results_dir(args.device))
    with cli_logging(VERBOSE if args.verbose else QUIET):
        return run(args, parser)


def retier(out: Path) -> int:
    """Tiers of families.json re-derived from its stored agreement under the current TIERS (when they change)."""
    payload = json.loads((out / "families.json").read_text())
    for entry in payload["families"]:
        for row in [*entry["rows"], *(chosen for chosen in entry["fastest"].values() if chosen)]:
            if row.get("tier") is not None:
                row["tier"] = accuracy_tier({"max_abs_error": row["max_abs"], "spearman": row["spearman"],
                                             "top10_agreement": row["top10"]})
    retiered = "; then python scripts/bench_families.py --retier"
    payload["command"] = payload["command"].removesuffix(retiered) + retiered
    atomic_write(out / "families.json", (json.dumps(payload, indent=1) + "\n").encode())
    atomic_write(out / "families.md", markdown(payload).encode())
    print(f"re-derived the tiers in {out / 'families.json'}, {out / 'families.md'}")
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    families = args.families.split(",")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    workload = load_workload(args.workload)
    vocabulary = TrainedVocabulary(training_texts(TRAIN_FILE))
    folder_root = cache_dir() / "bench-families"
    entries = []
    for family in families:
        started = time.perf_counter()
        folder = build_family_model(folder_root / family, family, size=MID_SIZE, vocabulary=vocabulary)
        config = BenchConfig(model=str(folder), device=args.device, workload=args.workload, repetitions=1,
                             latency_requests=1, variants=args.variants.split(","))

        def progress(row: BenchRow, family: str = family) -> None:
            rate = f"{row.throughput['pairs_per_s']:8.1f} pairs/s" if row.throughput else "refused/failed"
            print(f"  {family:11} {row.label[:36]:36} {rate}", flush=True)

        result = run_bench(config, workload, on_row=progress)
        entry = family_result(family, result, first_token_gain(folder, workload, args.device))
        entry["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())  # --update mixes runs: each its own
        entries.append(entry)
        best = entry["fastest"]["fp32"]
        summary = f"{best['label']} {best['x_st_fp32']:.2f}x" if best else "none"
        print(f"{family:11} done in {time.perf_counter() - started:4.0f} s; fastest fp32: {summary}", flush=True)
    out = args.out or results_dir(args.device)
    command = "python scripts/bench_families.py" + ("" if len(sys.argv) == 1 else " " + " ".join(sys.argv[1:]))
    if args.update and (out / "families.json").is_file():
        previous = json.loads((out / "families.json").read_text())
        if previous["workload"] != workload.name:
            parser.error(f"--update: the existing file measured {previous['workload']}, not {workload.name}")
        for entry in previous["families"]:
            entry.setdefault("measured", previous["created"])
        fresh = {entry["family"]: entry for entry in entries}
        entries = [fresh.pop(entry["family"], entry) for entry in previous["families"]] + list(fresh.values())
        command = f"{previous['command']}; then {command}"
    payload = {
        "device": args.device,
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command,
        "workload": workload.name,
        "pairs": workload.num_pairs,
        "size": MID_SIZE,
        "families": entries,
    }
    atomic_write(out / "families.json", (json.dumps(payload, indent=1) + "\n").encode())
    atomic_write(out / "families.md", markdown(payload).encode())
    print(f"wrote {out / 'families.json'}, {out / 'families.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
