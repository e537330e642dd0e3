"""Build the retrieve-then-rerank workload: BM25 top-100 over the public half's descriptions.

For each of the 400 queries of the bundled Debian workload (same qids, same query text), the
candidates are BM25's top 100 over every description of the public half: the training file's
positives plus the bundled workload's corpus (29,049 packages). Candidates are stored in BM25
order with BM25's scores, so the first stage is a row of its own in the bench; the relevant
package is sometimes missing (recall@100 < 1) and the negatives are hard, as in MS MARCO's
re-ranking task. Writes crossenc/data/rerank-debian-bm25.json.gz (deterministic).

Run: python scripts/build_bm25_workload.py   (needs `pip install -e '.[train]'`; ~5 s)
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from crossenc.paths import PACKAGE_DATA
from crossenc.workloads import DEBIAN_WORKLOAD

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TOP_K = 100


def bm25_index(texts: list[str]):
    """bm25s with English stop words and Snowball stemming: the usual strong lexical baseline."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    return retriever, stemmer


def search(retriever, stemmer, queries: list[str], k: int):
    import bm25s

    tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    return retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)


def public_corpus(train_path: Path, workload: dict) -> dict[str, str]:
    """package -> description for the training file's positives and the workload's corpus."""
    corpus = dict(workload["corpus"])
    with gzip.open(train_path, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            corpus.setdefault(record["package"], record["positive"])
    return dict(sorted(corpus.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, default=SHARED / "debian-train.jsonl.gz")
    parser.add_argument("--out", type=Path, default=PACKAGE_DATA / "rerank-debian-bm25.json.gz")
    args = parser.parse_args(argv)

    with gzip.open(DEBIAN_WORKLOAD, "rt", encoding="utf-8") as handle:
        workload = json.load(handle)
    corpus = public_corpus(args.train, workload)
    ids = list(corpus)
    retriever, stemmer = bm25_index([corpus[doc_id] for doc_id in ids])
    results, scores = search(retriever, stemmer, [q["query"] for q in workload["queries"]], TOP_K)

    queries, used, found = [], set(), 0
    for record, hits, hit_scores in zip(workload["queries"], results, scores):
        candidates = [ids[int(index)] for index in hits]
        used.update(candidates)
        found += bool(set(record["relevant"]) & set(candidates))
        queries.append({
            "qid": record["qid"], "query": record["query"], "candidates": candidates,
            "relevant": record["relevant"], "first_stage": [round(float(s), 4) for s in hit_scores],
        })
    out = {
        "source": workload["source"],
        "task": "query = package synopsis; candidates = BM25 top-100 over the public half; "
                "relevant = that package's long description",
        "first_stage_name": "BM25",  # the bench's first-stage row
        "first_stage": "bm25s (BM25 k1=1.5 b=0.75, English stop words, Snowball stemmer)",
        "corpus": {doc_id: corpus[doc_id] for doc_id in sorted(used)},
        "queries": queries,
    }
    payload = json.dumps(out, ensure_ascii=False, sort_keys=True).encode()
    tmp = args.out.with_suffix(".tmp")
    with gzip.GzipFile(tmp, "wb", mtime=0) as handle:  # mtime=0: same bytes on every run
        handle.write(payload)
    tmp.replace(args.out)
    print(f"{len(queries)} queries, {len(out['corpus'])} documents, recall@{TOP_K} "
          f"{found / len(queries):.3f} -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
