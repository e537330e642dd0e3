"""Reranking workloads: the bundled Debian set, user JSONL files, synthetic length mixes."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crossenc.paths import PACKAGE_DATA

DEBIAN_WORKLOAD = PACKAGE_DATA / "rerank-debian.json.gz"
# The demo head is fitted on queries [0, FIT_QUERIES); everything measured uses later ones.
FIT_QUERIES = 300
EVAL_START = 300


@dataclass(frozen=True)
class RerankQuery:
    """One query, its candidate documents, and which of them are relevant (indices)."""

    qid: str
    query: str
    documents: tuple[str, ...]
    relevant: frozenset[int] = field(default_factory=frozenset)

    def pairs(self) -> list[tuple[str, str]]:
        return [(self.query, document) for document in self.documents]


@dataclass(frozen=True)
class Workload:
    name: str
    queries: tuple[RerankQuery, ...]

    def pairs(self) -> list[tuple[str, str]]:
        return [pair for query in self.queries for pair in query.pairs()]

    @property
    def num_pairs(self) -> int:
        return sum(len(query.documents) for query in self.queries)

    def subset(self, start: int, count: int | None = None) -> "Workload":
        stop = None if count is None else start + count
        chosen = self.queries[start:stop]
        return Workload(f"{self.name}[{start}:{start + len(chosen)}]", chosen)


def load_debian(path: Path = DEBIAN_WORKLOAD) -> Workload:
    """The bundled Debian set: 400 queries (package synopsis) x 100 long descriptions, one relevant."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        raw = json.load(handle)
    corpus = raw["corpus"]
    queries = []
    for record in raw["queries"]:
        candidates = record["candidates"]
        relevant = frozenset(index for index, doc_id in enumerate(candidates) if doc_id in set(record["relevant"]))
        queries.append(
            RerankQuery(record["qid"], record["query"], tuple(corpus[doc_id] for doc_id in candidates), relevant)
        )
    return Workload("debian", tuple(queries))


def load_jsonl(path: str | Path) -> Workload:
    """A user workload: one JSON object per line with "query", "documents" and optional "relevant" indices."""
    queries = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(record.get("query"), str) or not isinstance(record.get("documents"), list):
                raise ValueError(f"{path}:{line_number}: expected {{'query': str, 'documents': [str, ...]}}")
            queries.append(
                RerankQuery(
                    str(record.get("qid", line_number)),
                    record["query"],
                    tuple(record["documents"]),
                    frozenset(record.get("relevant", ())),
                )
            )
    if not queries:
        raise ValueError(f"{path}: no queries found")
    return Workload(Path(path).stem, tuple(queries))


def synthetic(
    num_queries: int, docs_per_query: int, doc_words: Iterable[int] | tuple[int, int], seed: int = 0
) -> Workload:
    """Random-word documents with lengths drawn uniformly from ``doc_words=(low, high)`` words."""
    low, high = tuple(doc_words)
    rng = random.Random(seed)
    vocabulary = "the a package library tool data server client network file system python module game".split()
    queries = []
    for query_index in range(num_queries):
        documents = tuple(
            " ".join(rng.choice(vocabulary) for _ in range(rng.randint(low, high))) for _ in range(docs_per_query)
        )
        queries.append(RerankQuery(f"s{query_index}", " ".join(rng.sample(vocabulary, 3)), documents))
    return Workload(f"synthetic-{low}-{high}w", tuple(queries))


def load_workload(spec: str) -> Workload:
    """``debian`` (all), ``debian:START:COUNT``, ``synthetic:Q:D:LOW:HIGH`` or a JSONL path."""
    if spec == "debian":
        return load_debian()
    if spec.startswith("debian:"):
        _, start, count = spec.split(":")
        return load_debian().subset(int(start), int(count))
    if spec.startswith("synthetic:"):
        _, num_queries, docs, low, high = spec.split(":")
        return synthetic(int(num_queries), int(docs), (int(low), int(high)))
    return load_jsonl(spec)
