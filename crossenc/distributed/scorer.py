"""Score one pyarrow batch of rows with one CrossEncoder: the unit of work of a Ray actor and of
``crossenc score`` in-process. Imports no Ray, so the in-process path runs without it."""

from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LAYOUTS = ("pairs", "lists")
BAD_ROWS = ("raise", "keep")
# Rows per Scorer call: a Ray block (the unit a dead actor's replacement retries) and a progress step.
DEFAULT_ROWS_PER_CALL = {"pairs": 2048, "lists": 32}  # lists: ~100 candidates a row -> ~3,200 pairs


class BadRowError(ValueError):
    """A row that cannot be scored (missing field, non-string text); the message names the row."""


@dataclass(frozen=True)
class ScoringSpec:
    """What to load and which columns to read and write; picklable, sent to every actor.

    ``layout="pairs"``: one row per (query, document), adds ``score_column`` (default "score";
    a list of floats for multi-label models). ``layout="lists"``: one row per query with a list of
    candidates in ``documents_column``; adds ``score_column`` (default "scores", aligned with the
    input list) and ``ranking_column`` (``[{index, score}]`` best first, ``top_k`` of them; ties keep
    input order). ``bad_rows="raise"`` fails on the first bad row, naming it by ``id_column`` (or its
    position in the batch); ``"keep"`` adds ``error_column`` (null for scored rows) and leaves the
    bad rows' scores null. ``threads``: torch intra-op threads and tokenizer threads per scorer
    (None: crossenc's default, one per physical core).
    """

    model: str
    layout: str = "pairs"
    query_column: str = "query"
    document_column: str = "document"
    documents_column: str = "documents"
    score_column: str | None = None
    ranking_column: str = "ranking"
    top_k: int | None = None
    id_column: str | None = None
    bad_rows: str = "raise"
    error_column: str = "error"
    backend: str = "torch"
    variant: str | None = None
    device: str | None = None
    accuracy: str | None = None
    batch_size: int = 32
    max_tokens: int | None = None
    threads: int | None = None
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    predict_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.bad_rows not in BAD_ROWS:
            raise ValueError(f"bad_rows must be one of {BAD_ROWS}, got {self.bad_rows!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be an int >= 0 or None, got {self.top_k!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads!r}")
        if self.score_column is None:
            object.__setattr__(self, "score_column", "score" if self.layout == "pairs" else "scores")

    @property
    def input_columns(self) -> tuple[str, str]:
        return (self.query_column, self.document_column if self.layout == "pairs" else self.documents_column)

    def output_columns(self) -> list[str]:
        added = [self.score_column] + ([self.ranking_column] if self.layout == "lists" else [])
        return added + ([self.error_column] if self.bad_rows == "keep" else [])

    def replace(self, **changes: Any) -> "ScoringSpec":
        return dataclasses.replace(self, **changes)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def row_problem(spec: ScoringSpec, query: Any, texts: Any, present: tuple[bool, bool] = (True, True)) -> str | None:
    """Why a row cannot be scored (``None`` if it can). ``texts``: the document, or the list of them."""
    query_name, texts_name = spec.input_columns
    for name, value, is_present in ((query_name, query, present[0]), (texts_name, texts, present[1])):
        if not is_present:
            return f"{name!r} is missing"
    if not isinstance(query, str):
        return f"{query_name!r} is {_type_name(query)}, expected a string"
    if spec.layout == "pairs":
        if not isinstance(texts, str):
            return f"{texts_name!r} is {_type_name(texts)}, expected a string"
        return None
    if not isinstance(texts, (list, tuple, np.ndarray)):
        return f"{texts_name!r} is {_type_name(texts)}, expected a list of strings"
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            return f"{texts_name!r}[{position}] is {_type_name(text)}, expected a string"
    return None


def describe_row(row_id: Any, position: int) -> str:
    return f"row {row_id}" if row_id is not None else f"row {position} of its block (set id_column to name rows)"


class Scorer:
    """Ray Data callable class: loads one CrossEncoder per actor, then scores pyarrow batches.

    Each call sends all valid pairs of the batch through one ``CrossEncoder.predict`` call, so
    crossenc's length-sorted token-budget batching runs inside the actor as it does in-process.
    """

    def __init__(self, spec: ScoringSpec) -> None:
        from crossenc import CrossEncoder
        from crossenc.demo import expand_alias

        self.spec = spec
        encoder_kwargs = dict(spec.encoder_kwargs)
        if spec.threads is not None:
            # Tokenizers' Rust pool reads this on first use; without it every actor starts one thread per core.
            os.environ.setdefault("RAYON_NUM_THREADS", str(spec.threads))
            if spec.backend == "onnx":
                backend_kwargs = dict(encoder_kwargs.get("backend_kwargs") or {})
                backend_kwargs.setdefault("intra_op_num_threads", spec.threads)
                encoder_kwargs["backend_kwargs"] = backend_kwargs
        self.encoder = CrossEncoder(
            expand_alias(spec.model),  # "demo" resolves on each node: every node builds its own copy
            backend=spec.backend,
            variant=spec.variant,
            device=spec.device,
            accuracy=spec.accuracy,
            max_tokens=spec.max_tokens,
            **encoder_kwargs,
        )
        if spec.threads is not None:
            import torch

            # The torch backend sets one thread per physical core at load; N actors on a node share those cores.
            torch.set_num_threads(spec.threads)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        spec = self.spec
        if spec.layout == "lists" and self.encoder.num_labels != 1:
            # Checked here, not at load: Ray restarts an actor whose constructor fails, a failed call ends the job.
            raise ValueError(f"layout 'lists' ranks by one score a document; {spec.model} has "
                             f"{self.encoder.num_labels} labels (use layout 'pairs')")
        query_name, texts_name = spec.input_columns
        present = (query_name in table.column_names, texts_name in table.column_names)
        queries = table.column(query_name).to_pylist() if present[0] else [None] * table.num_rows
        texts = table.column(texts_name).to_pylist() if present[1] else [None] * table.num_rows
        ids = table.column(spec.id_column).to_pylist() if spec.id_column in table.column_names else [None] * table.num_rows
        errors: list[str | None] = []
        for position, (query, text, row_id) in enumerate(zip(queries, texts, ids)):
            problem = row_problem(spec, query, text, present)
            if problem is not None and spec.bad_rows == "raise":
                raise BadRowError(f"{describe_row(row_id, position)}: {problem}")
            errors.append(problem)
        good = [index for index, problem in enumerate(errors) if problem is None]
        columns = self._pairs_columns(queries, texts, good) if spec.layout == "pairs" else self._lists_columns(queries, texts, good)
        for name, column in columns.items():
            table = _set_column(table, name, column)
        if spec.bad_rows == "keep":
            table = _set_column(table, spec.error_column, pa.array(errors, type=pa.string()))
        return table

    def _predict(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros((0,) if self.encoder.num_labels == 1 else (0, self.encoder.num_labels), dtype=np.float32)
        return np.asarray(self.encoder.predict(pairs, batch_size=self.spec.batch_size, **self.spec.predict_kwargs))

    def _pairs_columns(self, queries: list, documents: list, good: list[int]) -> dict[str, Any]:
        import pyarrow as pa

        scores = self._predict([(queries[index], documents[index]) for index in good])
        values: list[Any] = [None] * len(queries)
        for index, score in zip(good, scores.tolist()):
            values[index] = score
        score_type = pa.float32() if self.encoder.num_labels == 1 else pa.list_(pa.float32())
        return {self.spec.score_column: pa.array(values, type=score_type)}

    def _lists_columns(self, queries: list, documents: list, good: list[int]) -> dict[str, Any]:
        import pyarrow as pa

        pairs = [(queries[index], text) for index in good for text in documents[index]]
        flat = self._predict(pairs).astype(np.float32)
        offsets = np.cumsum([0] + [len(documents[index]) for index in good])
        aligned: list[Any] = [None] * len(queries)
        rankings: list[Any] = [None] * len(queries)
        for index, start, stop in zip(good, offsets[:-1], offsets[1:]):
            row_scores = flat[start:stop]
            order = np.argsort(-row_scores, kind="stable")[: self.spec.top_k]  # stable: ties keep input order
            aligned[index] = row_scores.tolist()
            rankings[index] = [{"index": int(position), "score": float(row_scores[position])} for position in order]
        ranking_type = pa.list_(pa.struct([("index", pa.int32()), ("score", pa.float32())]))
        return {
            self.spec.score_column: pa.array(aligned, type=pa.list_(pa.float32())),
            self.spec.ranking_column: pa.array(rankings, type=ranking_type),
        }


def _set_column(table: Any, name: str, column: Any) -> Any:
    """Append ``name``, or replace it where the input already has a column of that name."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)
