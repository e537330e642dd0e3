"""Where tokenization time goes, and which faster tokenizers give Hugging Face's ids (docs/tokenization.md).

    RAYON_NUM_THREADS=1 python scripts/tokenizer_candidates.py profile      # per core, tokenizers path
    pip install nanotoken tokie flash-tokenizer blingfire kitoken           # the candidates (any subset)
    RAYON_NUM_THREADS=1 python scripts/tokenizer_candidates.py candidates   # exactness %, texts/s per core

Texts: every distinct text of the Debian workload, the standard library's docstrings, the edge
cases of crossenc.fast_tokenization, and 20,000 random strings over all of Unicode (``fuzz``).
Each candidate runs in its own process; one missing or failing to load gets a row saying so.
Prints Markdown tables; ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CANDIDATES = ("tokenizers", "nanotoken", "tokie", "flash-tokenizer", "blingfire", "kitoken")


def text_sets() -> dict[str, list[str]]:
    from crossenc.fast_tokenization import EDGE_PROBES
    from crossenc.workloads import load_debian, stdlib_docstrings
    from tests.test_fast_tokenization import fuzz_texts

    debian = list(dict.fromkeys(t for q in load_debian().queries for t in (q.query, *q.documents)))
    return {"debian": debian, "docstrings": list(stdlib_docstrings().values()), "edge": list(EDGE_PROBES),
            "fuzz": fuzz_texts(20_000)}


def hub_backend():
    from tokenizers import Tokenizer

    from crossenc.demo import minilm_dir

    backend = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    backend.no_padding()
    backend.no_truncation()
    return backend


def best_seconds(function, repetitions: int = 3) -> float:
    function()
    best = float("inf")
    for _ in range(repetitions):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------- profile
def profile() -> dict:
    """Per pair, on one thread: each step of today's split path (tokenizers) and of the joint pair call."""
    from crossenc.fast_tokenization import flatten_ids
    from crossenc.pair_encoding import PairEncoder
    from crossenc.workloads import load_workload

    backend = hub_backend()
    out = {}
    for spec in ("debian:300:100", "docstrings:100:100"):
        pairs = load_workload(spec).pairs()
        n = len(pairs)
        hub = PairEncoder(backend, 512, fast=False)
        fast = PairEncoder(backend, 512)
        joint = PairEncoder(backend, 512, split=False)
        slots: dict[str, int] = {}
        for pair in pairs:
            slots.setdefault(pair[0], len(slots))
            slots.setdefault(pair[1], len(slots))
        distinct = list(slots)
        encodings = backend.encode_batch_fast(distinct, add_special_tokens=False)
        rows = [encoding.ids for encoding in encodings]

        def dedup():
            seen: dict[str, int] = {}
            np.fromiter((seen.setdefault(p[0], len(seen)) for p in pairs), np.int64, n)
            np.fromiter((seen.setdefault(p[1], len(seen)) for p in pairs), np.int64, n)

        text_ids, text_lengths = flatten_ids(rows)
        assembly = PairEncoder(backend, 512, fast=False)
        assembly.texts.encode = lambda texts: (text_ids, text_lengths)  # texts already encoded: the rest alone
        engine = fast.texts.fast
        import threading

        lock = threading.Lock()

        def locked():
            with lock:
                pass

        steps = {
            "joint pair call (encode_batch_fast of pairs, then arrays)": lambda: joint.encode(pairs, True),
            "split, whole call (tokenizers)": lambda: hub.encode(pairs, True),
            "  dedup (dict of distinct texts)": dedup,
            "  Rust encode_batch_fast of distinct texts": lambda: backend.encode_batch_fast(distinct,
                                                                                            add_special_tokens=False),
            "  Python: Encoding.ids lists": lambda: [encoding.ids for encoding in encodings],
            "  numpy: flatten lists to one array": lambda: flatten_ids(rows),
            "  dedup + numpy cut, truncate, assemble pairs": lambda: assembly.encode(pairs, True),
            "  (Rust encode_batch with offsets, for comparison)": lambda: backend.encode_batch(
                distinct, add_special_tokens=False),
            "split, whole call (nanotoken, warm cache)": lambda: fast.encode(pairs, True),
            "  nanotoken encode_batch of distinct texts, warm": lambda: engine.encode_batch(
                distinct, add_special_tokens=False, parallel=False),
            "  nanotoken encode_batch, cold cache": lambda: (engine.clear_cache(), engine.encode_batch(
                distinct, add_special_tokens=False, parallel=False)),
        }
        timed = {name: best_seconds(step) / n * 1e6 for name, step in steps.items()}
        timed["lock acquire + release, per call (us, not per pair)"] = best_seconds(locked) * 1e6
        out[spec] = {"pairs": n, "distinct_texts": len(distinct), "us_per_pair": timed}
    return out


def profile_markdown(result: dict) -> str:
    specs = list(result)
    lines = ["| step | " + " | ".join(f"{spec}, us/pair" for spec in specs) + " |", "|---|" + "---:|" * len(specs)]
    for step in result[specs[0]]["us_per_pair"]:
        lines.append(f"| {step.strip()}{' (part)' if step.startswith('  ') else ''} | "
                     + " | ".join(f"{result[spec]['us_per_pair'][step]:.2f}" for spec in specs) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- candidates
def encoder_of(name: str):
    """texts -> list of id sequences (no special tokens), one thread."""
    from crossenc.demo import minilm_dir

    path = str(minilm_dir() / "tokenizer.json")
    if name == "tokenizers":
        backend = hub_backend()
        return lambda texts: [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    if name == "nanotoken":
        import nanotoken

        engine = nanotoken.WordPieceTokenizer.from_json(Path(path).read_text())

        def nano(texts):
            ids, offsets = engine.encode_batch(texts, add_special_tokens=False, parallel=False)
            return np.split(ids, offsets[1:-1])
        return nano
    if name == "tokie":
        import tokie

        engine = tokie.Tokenizer.from_json(path)

        def tok(texts):
            ids, lengths = engine.encode_batch_flat(texts, add_special_tokens=False)
            return np.split(np.asarray(ids), np.cumsum(lengths)[:-1])
        return tok
    if name == "kitoken":
        import kitoken

        engine = kitoken.Kitoken.from_tokenizers_file(path)
        return lambda texts: engine.encode_all(texts, True)
    if name == "flash-tokenizer":
        from flash_tokenizer import BertTokenizerFlash

        engine = BertTokenizerFlash(str(minilm_dir() / "vocab.txt"), do_lower_case=True, model_max_length=100_000)
        return lambda texts: [engine.tokenizer.encode(text, "none", 100_000)[1:-1] for text in texts]
    if name == "blingfire":
        import blingfire

        handle = blingfire.load_model(os.path.join(os.path.dirname(blingfire.__file__), "bert_base_tok.bin"))

        def bling(texts):
            out = []
            for text in texts:
                ids = blingfire.text_to_ids(handle, text, max(16, 2 * len(text.encode())), 100)
                out.append(ids[ids != 0])
            return out
        return bling
    raise ValueError(name)


def measure_candidate(name: str) -> dict:
    try:
        encode = encoder_of(name)
    except Exception as error:  # not installed, or refuses the tokenizer
        return {"name": name, "error": f"{type(error).__name__}: {error}"[:120]}
    reference = encoder_of("tokenizers")
    row: dict = {"name": name}
    for key, texts in text_sets().items():
        try:
            got = encode(texts)
        except Exception as error:
            row[key] = {"error": f"{type(error).__name__}: {error}"[:120]}
            continue
        expected = reference(texts)
        same = [list(map(int, ids)) == want for ids, want in zip(got, expected)]
        entry = {"exact_pct": 100 * sum(same) / len(texts), "texts": len(texts),
                 "first_wrong": next((texts[i][:60] for i, ok in enumerate(same) if not ok), None)}
        if key in ("debian", "docstrings"):
            sample = texts[:4000]
            seconds = best_seconds(lambda: encode(sample))
            entry["texts_per_s"] = len(sample) / seconds
            entry["mb_per_s"] = sum(len(text.encode()) for text in sample) / seconds / 1e6
        row[key] = entry
    return row


def candidates_markdown(rows: list[dict]) -> str:
    lines = ["| candidate | exact: Debian | docstrings | edge cases | fuzz | Debian texts/s | MB/s | "
             "docstrings texts/s | MB/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | {row['error']} |" + " |" * 7)
            continue

        def pct(key):
            entry = row.get(key, {})
            return f"{entry['exact_pct']:.2f}%" if "exact_pct" in entry else entry.get("error", "-")

        def speed(key, field):
            entry = row.get(key, {})
            return f"{entry[field]:,.0f}" if field in entry else "-"

        lines.append(f"| {row['name']} | {pct('debian')} | {pct('docstrings')} | {pct('edge')} | {pct('fuzz')} | "
                     f"{speed('debian', 'texts_per_s')} | {speed('debian', 'mb_per_s')} | "
                     f"{speed('docstrings', 'texts_per_s')} | {speed('docstrings', 'mb_per_s')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["profile", "candidates"])
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # one candidate, in a child process
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.test_fast_tokenization's fuzz texts
    if args.what == "profile":
        result = profile()
        print(f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')}\n")
        print(profile_markdown(result))
    elif args.only:
        print(json.dumps(measure_candidate(args.only)))
        return 0
    else:
        result = []
        for name in CANDIDATES:
            done = subprocess.run([sys.executable, __file__, "candidates", "--only", name], capture_output=True,
                                  text=True, check=False)
            lines = done.stdout.strip().splitlines()
            result.append(json.loads(lines[-1]) if done.returncode == 0 and lines
                          else {"name": name, "error": done.stderr.strip().splitlines()[-1][:120]})
        print(candidates_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
