"""Reranking data: the bundled Debian set, user JSONL files, synthetic length mixes, and the samplers
that draw verification and calibration pairs from them (the bench, exporters and scripts all read these)."""

from __future__ import annotations

import functools
import functools
import gzip
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossenc.paths import PACKAGE_DATA

DEBIAN_WORKLOAD = PACKAGE_DATA / "rerank-debian.json.gz"
# Same 400 queries, candidates = BM25 top-100 over the public half (scripts/build_bm25_workload.py).
DEBIAN_BM25_WORKLOAD = PACKAGE_DATA / "rerank-debian-bm25.json.gz"
# Queries [0, FIT_QUERIES) are training packages (int8 calibration draws from them); EVAL_START on are
# the evaluation set, never trained, calibrated or tuned on (the demo holds out 200-299 for validation).
FIT_QUERIES = 300
EVAL_START = 300
VERIFY_START = EVAL_START + 50  # export verification: held-out queries (random candidates), never calibrated on
Pair = tuple[str, str]


@dataclass(frozen=True)
class RerankQuery:
    """One query, its candidate documents, and which of them are relevant (indices)."""

    qid: str
    query: str
    documents: tuple[str, ...]
    relevant: frozenset[int] = field(default_factory=frozenset)
    first_stage: tuple[float, ...] | None = None  # the retriever's scores, where the candidates came from one

    def pairs(self, indices: Iterable[int] | None = None) -> list[Pair]:
        """(query, document) for every document, or for those at ``indices``."""
        chosen = range(len(self.documents)) if indices is None else indices
        return [(self.query, self.documents[index]) for index in chosen]


@dataclass(frozen=True)
class Workload:
    name: str
    queries: tuple[RerankQuery, ...]
    first_stage_name: str | None = None  # the retriever that chose (and ordered) the candidates

    def pairs(self) -> list[tuple[str, str]]:
        return [pair for query in self.queries for pair in query.pairs()]

    @property
    def num_pairs(self) -> int:
        return sum(len(query.documents) for query in self.queries)

    def subset(self, start: int, count: int | None = None) -> "Workload":
        stop = None if count is None else start + count
        chosen = self.queries[start:stop]
        return Workload(f"{self.name}[{start}:{start + len(chosen)}]", chosen, self.first_stage_name)


@functools.lru_cache(maxsize=4)  # frozen, so shared: calibration, verification and the bench parse it once
def load_debian(path: Path = DEBIAN_WORKLOAD, name: str = "debian") -> Workload:
    """The bundled Debian set: 400 queries (package synopsis) x 100 long descriptions, one relevant."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        raw = json.load(handle)
    corpus = raw["corpus"]
    queries = []
    for record in raw["queries"]:
        candidates = record["candidates"]
        wanted = set(record["relevant"])
        relevant = frozenset(index for index, doc_id in enumerate(candidates) if doc_id in wanted)
        first_stage = tuple(record["first_stage"]) if "first_stage" in record else None
        queries.append(
            RerankQuery(record["qid"], record["query"], tuple(corpus[doc_id] for doc_id in candidates), relevant,
                        first_stage)
        )
    return Workload(name, tuple(queries), raw.get("first_stage_name"))


def load_debian_bm25() -> Workload:
    """Retrieve-then-rerank: the same 400 queries, candidates = BM25 top-100 in BM25 order (the
    relevant package is missing for 8% of queries, so no reranker reaches MRR 1)."""
    return load_debian(DEBIAN_BM25_WORKLOAD, "debian-bm25")


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


def stdlib_docstrings() -> dict[str, str]:
    """``module.name`` -> docstring (over 40 characters, dedented) of every class and function of the
    top-level modules of this Python's standard library: code documentation, a second kind of text
    beside the Debian descriptions, on disk wherever Python is (its content follows the Python version)."""
    return dict(_stdlib_docstrings())


@functools.lru_cache(maxsize=1)
def _stdlib_docstrings() -> dict[str, str]:
    import ast
    import sysconfig

    found: dict[str, str] = {}
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    found.setdefault(f"{path.stem}.{node.name}", doc)
    return found


def load_docstrings(num_queries: int = 100, docs_per_query: int = 100, seed: int = 0) -> Workload:
    """Reranking over standard-library docstrings: query = ``module.name: first line``, documents = its
    own full docstring (relevant) and ``docs_per_query - 1`` others drawn at random."""
    docs = stdlib_docstrings()
    names = sorted(docs)
    if not names:
        raise ValueError("no docstrings found in this Python's standard library")
    rng = random.Random(seed)
    chosen = rng.sample(names, min(num_queries, len(names)))
    queries = []
    for name in chosen:
        others = rng.sample([other for other in names if other != name], min(docs_per_query - 1, len(names) - 1))
        documents = [docs[name], *(docs[other] for other in others)]
        order = list(range(len(documents)))
        rng.shuffle(order)
        summary = docs[name].splitlines()[0]
        queries.append(RerankQuery(name, f"{name}: {summary}", tuple(documents[index] for index in order),
                                   frozenset([order.index(0)])))
    return Workload(f"docstrings-{num_queries}x{docs_per_query}", tuple(queries))


def load_workload(spec: str) -> Workload:
    """``debian`` / ``debian-bm25`` (all), ``debian[-bm25]:START:COUNT``, ``docstrings:Q:D`` (standard-library
    docstrings), ``synthetic:Q:D:LOW:HIGH`` or a JSONL path."""
    loaders = {"debian": load_debian, "debian-bm25": load_debian_bm25}
    name, _, subset = spec.partition(":")
    if name in loaders:
        if not subset:
            return loaders[name]()
        start, count = subset.split(":")
        return loaders[name]().subset(int(start), int(count))
    if spec.startswith("docstrings:"):
        _, num_queries, docs = spec.split(":")
        return load_docstrings(int(num_queries), int(docs))
    if spec.startswith("synthetic:"):
        _, num_queries, docs, low, high = spec.split(":")
        return synthetic(int(num_queries), int(docs), (int(low), int(high)))
    return load_jsonl(spec)


# --------------------------------------------------------------------------- samplers
def sample_documents(query: RerankQuery, count: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``count`` of the query's documents, in order: its relevant ones plus random others."""
    others = [index for index in range(len(query.documents)) if index not in query.relevant]
    take = max(0, min(count - len(query.relevant), len(others)))
    picked = rng.choice(len(others), size=take, replace=False).tolist() if take else []
    return sorted(query.relevant | {others[index] for index in picked})


def verification_groups(num_queries: int, docs_per_query: int, seed: int = 0) -> list[list[Pair]]:
    """Pairs of varied length from held-out Debian queries, one group per query (what exports are verified on)."""
    rng = np.random.default_rng(seed)
    queries = load_debian().queries[VERIFY_START : VERIFY_START + num_queries]
    return [query.pairs(sample_documents(query, docs_per_query, rng)) for query in queries]


def calibration_queries(path: str | Path | None = None) -> tuple[Sequence[RerankQuery], str]:
    """(queries, where from): the user's JSONL file, else the Debian training queries (never measured ones)."""
    if path:
        return load_jsonl(path).queries, str(path)
    return load_debian().queries[:FIT_QUERIES], f"debian training queries [0, {FIT_QUERIES})"


def calibration_groups(
    queries: Sequence[RerankQuery], num_queries: int, docs_per_query: int, seed: int = 0
) -> list[list[Pair]]:
    """``num_queries`` random queries (in order), each with ``docs_per_query`` documents as at serving time."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(queries), size=min(num_queries, len(queries)), replace=False)
    return [queries[index].pairs(sample_documents(queries[index], docs_per_query, rng)) for index in sorted(chosen.tolist())]


def sample_pairs(queries: Sequence[RerankQuery], count: int, seed: int = 0) -> list[Pair]:
    """``count`` pairs drawn uniformly from all the queries' pairs (in drawing order)."""
    pairs = [pair for query in queries for pair in query.pairs()]
    chosen = random.Random(seed).sample(range(len(pairs)), min(count, len(pairs)))
    return [pairs[index] for index in chosen]
