"""Score a JSONL or Parquet file into another, in this process or on Ray: what ``crossenc score`` runs.

Input and output pass through the driver (no shared storage needed on a cluster); outputs are
written to a temporary file beside the target and renamed into place only when the job succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossenc.distributed.scorer import DEFAULT_ROWS_PER_CALL, BadRowError, Scorer, ScoringSpec, row_problem
from crossenc.optional import require

ROW_COLUMN = "__crossenc_row__"  # 0-based input row index, carried through scoring to name bad rows
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class BadRow:
    row: int
    error: str
    record: Any
    line: int | None = None

    def to_json(self) -> str:
        fields = {"row": self.row, **({"line": self.line} if self.line is not None else {}),
                  "error": self.error, "record": self.record}
        return json.dumps(fields, ensure_ascii=False, default=str)


def file_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown format {suffix or '(no suffix)'!r}; use .jsonl or .parquet")
    return FORMATS[suffix]


def _pa() -> Any:
    return require("pyarrow", "ray", "crossenc score (reads and writes JSONL / Parquet with pyarrow)")


def _jsonl_records(path: Path, spec: ScoringSpec, bad_rows: list[BadRow] | None) -> list[dict[str, Any]]:
    """Parsed rows that can be scored; a bad one raises, or goes to ``bad_rows`` when given."""
    query_name, texts_name = spec.input_columns
    records, row = [], 0
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record: Any = json.loads(line)
                problem = None if isinstance(record, dict) else f"expected a JSON object, got {type(record).__name__}"
            except json.JSONDecodeError as error:
                record, problem = line.rstrip("\n"), f"not valid JSON ({error.msg})"
            if problem is None:
                present = (query_name in record, texts_name in record)
                problem = row_problem(spec, record.get(query_name), record.get(texts_name), present)
            if problem is None:
                record[ROW_COLUMN] = row
                records.append(record)
            elif bad_rows is None:
                raise BadRowError(f"{path} line {line_number} (row {row}): {problem}")
            else:
                bad_rows.append(BadRow(row, problem, record, line_number))
            row += 1
    return records


def read_table(path: str | os.PathLike, spec: ScoringSpec, bad_rows: list[BadRow] | None = None) -> Any:
    """The input as a pyarrow Table with each row's 0-based index in ``ROW_COLUMN``.

    JSONL rows a table cannot hold (invalid JSON, a non-string query) are checked here; Parquet
    columns are typed, so its bad rows (nulls, a column of the wrong type) are found by the Scorer.
    """
    pa = _pa()
    path = Path(path)
    if file_format(path) == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.append_column(ROW_COLUMN, pa.array(range(table.num_rows), type=pa.int64()))
    records = _jsonl_records(path, spec, bad_rows)
    names = list(dict.fromkeys(name for record in records for name in record))  # every key, first-seen order
    columns = {}
    for name in names:
        try:
            columns[name] = pa.array([record.get(name) for record in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"{path}: column {name!r} mixes types a table cannot hold ({error})") from None
    return pa.table(columns) if columns else pa.table({ROW_COLUMN: pa.array([], type=pa.int64())})


class AtomicFile:
    """A file written under a temporary name beside ``path`` and renamed into place on ``commit()``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self.temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(handle)
        self.format = FORMATS.get(self.path.suffix.lower(), "jsonl")
        self._stream: Any = None

    def write(self, table: Any) -> None:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            if self._stream is None:
                self._stream = pq.ParquetWriter(self.temporary, table.schema)
            self._stream.write_table(table)
            return
        if self._stream is None:
            self._stream = open(self.temporary, "w", encoding="utf-8")
        self._stream.writelines(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in table.to_pylist())

    def write_lines(self, lines: list[str]) -> None:
        if self._stream is None:
            self._stream = open(self.temporary, "w", encoding="utf-8")
        self._stream.writelines(line + "\n" for line in lines)

    def commit(self, empty_schema: Any = None) -> None:
        if self._stream is None and self.format == "parquet" and empty_schema is not None:
            self.write(empty_schema.empty_table())
        if self._stream is not None:
            self._stream.close()
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        if self._stream is not None:
            self._stream.close()
        if os.path.exists(self.temporary):
            os.unlink(self.temporary)


def _in_process_batches(table: Any, spec: ScoringSpec, rows_per_call: int) -> Iterator[Any]:
    scorer = Scorer(spec)
    for start in range(0, table.num_rows, rows_per_call):
        yield scorer(table.slice(start, rows_per_call))


def _ray_batches(table: Any, spec: ScoringSpec, rows_per_call: int, address: str, verbose: bool,
                 ray_options: dict[str, Any], details: dict[str, Any]) -> Iterator[Any]:
    """Scored blocks from actors on the cluster at ``address``; ``details`` gets the actors' resources."""
    from crossenc.distributed.ray_data import _ray, connect, resources_per_actor, score_dataset

    ray = _ray()
    connected = connect(address, verbose)
    try:
        ray_options = {"concurrency": 1, "num_gpus": 0, **ray_options}
        num_cpus, threads = resources_per_actor(ray_options["concurrency"], ray_options.get("num_cpus"),
                                                ray_options["num_gpus"])
        spec = spec if spec.threads else spec.replace(threads=threads)
        details.update(concurrency=ray_options["concurrency"], num_cpus_per_actor=num_cpus,
                       threads_per_actor=spec.threads)
        # One block per call (what Ray retries when its actor dies); small inputs still reach every actor.
        rows_per_call = max(1, min(rows_per_call, -(-table.num_rows // ray_options["concurrency"])))
        blocks = [table.slice(start, rows_per_call) for start in range(0, table.num_rows, rows_per_call)]
        spec_fields = {name: value for name, value in vars(spec).items() if name != "model"}
        scored = score_dataset(ray.data.from_arrow(blocks), spec.model, rows_per_call=rows_per_call,
                               **{**ray_options, "num_cpus": num_cpus}, **spec_fields)
        scored.context.enable_progress_bars = verbose  # crossenc score shows its own bar
        yield from scored.iter_batches(batch_size=None, batch_format="pyarrow")
    finally:
        if connected:
            ray.shutdown()


def score_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: str,
    *,
    ray: str | None = None,
    errors_path: str | os.PathLike | None = None,
    progress: bool | None = None,
    verbose: bool = False,
    rows_per_call: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Score ``input_path`` (JSONL / Parquet) into ``output_path``: every input row with its columns
    plus the scores, in input order. ``ray``: None scores in this process; ``"local"``, ``"auto"`` or
    an address runs :func:`~crossenc.distributed.score_dataset` there (``concurrency``, ``num_cpus``,
    ``num_gpus``, ``preserve_order``, ... go to it). Without ``errors_path`` a bad row fails the job,
    naming the row; with it, bad rows go there (JSONL: row, error, record) and are skipped.
    Returns counts and timings."""
    started = time.perf_counter()
    ray_option_names = ("concurrency", "num_cpus", "num_gpus", "max_restarts", "max_task_retries",
                        "ray_remote_args", "preserve_order")
    ray_options = {name: options.pop(name) for name in ray_option_names if name in options}
    if ray is None and ray_options:
        raise ValueError(f"{', '.join(ray_options)} only apply with ray=...")
    # Scorers keep bad rows and this process raises on the first one: the same message in-process and on Ray.
    spec = ScoringSpec(model=model, id_column=ROW_COLUMN, bad_rows="keep", **options)
    file_format(output_path)  # an unknown suffix fails before any work
    rows_per_call = rows_per_call or DEFAULT_ROWS_PER_CALL[spec.layout]
    bad_rows: list[BadRow] | None = [] if errors_path else None
    table = read_table(input_path, spec, bad_rows)
    details: dict[str, Any] = {"ray": ray}
    if ray is None:
        batches = _in_process_batches(table, spec, rows_per_call)
    else:
        batches = _ray_batches(table, spec, rows_per_call, ray, verbose, ray_options, details)
    output = AtomicFile(output_path)
    counts = {"rows": table.num_rows + len(bad_rows or []), "scored": 0}
    first_output_s = None
    try:
        with _progress_bar(table.num_rows, progress) as bar, contextlib.closing(batches):  # closing: Ray shuts down
            for batch in batches:
                first_output_s = first_output_s or time.perf_counter() - started
                scored = _split_bad_rows(batch, spec, bad_rows)
                output.write(scored)
                counts["scored"] += scored.num_rows
                bar.update(batch.num_rows)
        if errors_path is not None:
            errors = AtomicFile(errors_path)
            errors.write_lines([bad.to_json() for bad in sorted(bad_rows or [], key=lambda bad: bad.row)])
            errors.commit()
        output.commit(empty_schema=table.drop_columns([ROW_COLUMN]).schema)
    except BaseException:
        output.discard()
        raise
    elapsed = time.perf_counter() - started
    return {**counts, "bad_rows": len(bad_rows or []), "seconds": elapsed, "first_output_s": first_output_s,
            **details}


def _split_bad_rows(batch: Any, spec: ScoringSpec, bad_rows: list[BadRow] | None) -> Any:
    """The scored rows of ``batch`` without the helper columns; bad ones go to ``bad_rows``, or raise if None."""
    import pyarrow.compute as pc

    failed = pc.is_valid(batch.column(spec.error_column))
    if pc.any(failed).as_py():
        bad = batch.filter(failed)
        rows, errors = bad.column(ROW_COLUMN).to_pylist(), bad.column(spec.error_column).to_pylist()
        if bad_rows is None:
            raise BadRowError(f"row {rows[0]}: {errors[0]}")
        record_columns = [name for name in bad.column_names if name not in [ROW_COLUMN, *spec.output_columns()]]
        bad_rows += [BadRow(row, error, record) for row, error, record in
                     zip(rows, errors, bad.select(record_columns).to_pylist())]
        batch = batch.filter(pc.invert(failed))
    return batch.drop_columns([ROW_COLUMN, spec.error_column])


def _progress_bar(total: int, progress: bool | None) -> Any:
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, unit="row", file=sys.stderr, disable=not enabled, ncols=80, mininterval=0.5)
