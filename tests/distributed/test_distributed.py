"""crossenc.distributed and `crossenc score`: in-process and on a local Ray instance (nothing leaves the machine)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crossenc.cli import main
from tests.conftest import random_pairs

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from crossenc.distributed import BadRowError, Scorer, ScoringSpec, score_dataset, score_file  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU Ray instance on this machine; its workers import this checkout's crossenc and this module."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # SlowSigmoid travels to the actors by value
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR", address="local")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def encoder(tiny_model):
    from crossenc import CrossEncoder

    return CrossEncoder(str(tiny_model), device="cpu")


def pair_rows(count: int, seed: int = 0) -> list[dict]:
    return [{"id": index, "query": query, "document": document, "extra": {"k": index % 3}}
            for index, (query, document) in enumerate(random_pairs(count, seed=seed))]


def list_rows(count: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    documents = [document for _, document in random_pairs(count * 8, seed=seed)]
    rows, start = [], 0
    for index, (query, _) in enumerate(random_pairs(count, seed=seed + 1)):
        size = int(rng.integers(0, 9))  # some rows have no candidates at all
        rows.append({"qid": f"q{index}", "query": query, "documents": documents[start:start + size]})
        start += size
    return rows


def blocks_of(rows: list[dict], rows_per_block: int) -> list:
    table = pa.Table.from_pylist(rows)
    return [table.slice(start, rows_per_block) for start in range(0, table.num_rows, rows_per_block)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_scores(encoder, rows: list[dict]) -> np.ndarray:
    return encoder.predict([(row["query"], row["document"]) for row in rows])


class SlowSigmoid:
    """Test-only activation: records the scoring process's pid, then sleeps, so a kill lands mid-job."""

    def __init__(self, pid_dir: str, delay_s: float) -> None:
        self.pid_dir, self.delay_s = pid_dir, delay_s

    def __call__(self, logits):
        import torch

        threads = f"{torch.get_num_threads()} {os.environ.get('RAYON_NUM_THREADS')}"
        staged = Path(self.pid_dir, f".{os.getpid()}")
        staged.write_text(threads)  # what this actor runs with; renamed so a reader never sees it half-written
        staged.rename(Path(self.pid_dir, str(os.getpid())))
        time.sleep(self.delay_s)
        return torch.sigmoid(logits)


# ---------------------------------------------------------------- in-process (no Ray needed)
def test_cli_in_process_jsonl_keeps_columns_order_and_scores(tiny_model, encoder, tmp_path):
    rows = pair_rows(150)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["score", str(source), str(tmp_path / "out.jsonl"), "--model", str(tiny_model),
                 "--rows-per-call", "40", "--quiet"]) == 0
    written = read_jsonl(tmp_path / "out.jsonl")
    assert [{key: row[key] for key in ("id", "query", "document", "extra")} for row in written] == rows
    np.testing.assert_allclose([row["score"] for row in written], expected_scores(encoder, rows), atol=1e-5)


def test_parquet_round_trip_matches_jsonl(tiny_model, encoder, tmp_path):
    rows = pair_rows(60, seed=3)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", str(tiny_model), progress=False)
    score_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", str(tiny_model), progress=False)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["id", "query", "document", "extra", "score"]
    assert table.schema.field("score").type == pa.float32()
    assert table.column("id").to_pylist() == list(range(60))
    np.testing.assert_allclose(table.column("score").to_numpy(), expected_scores(encoder, rows), atol=1e-5)
    np.testing.assert_allclose([row["score"] for row in read_jsonl(tmp_path / "out.jsonl")],
                               table.column("score").to_numpy(), atol=1e-6)


def test_lists_layout_in_process_matches_rank(tiny_model, encoder, tmp_path):
    rows = list_rows(20)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = score_file(source, tmp_path / "out.jsonl", str(tiny_model), layout="lists", top_k=3,
                         rows_per_call=6, progress=False)
    assert summary["scored"] == 20
    check_lists(encoder, rows, read_jsonl(tmp_path / "out.jsonl"), top_k=3)


def check_lists(encoder, rows: list[dict], written: list[dict], top_k: int | None) -> None:
    assert [row["qid"] for row in written] == [row["qid"] for row in rows]
    for row, out in zip(rows, written):
        if not row["documents"]:
            assert out["scores"] == [] and out["ranking"] == []
            continue
        np.testing.assert_allclose(out["scores"], expected_scores(encoder, [{"query": row["query"], "document": doc}
                                                                            for doc in row["documents"]]), atol=1e-5)
        ranked = encoder.rank(row["query"], row["documents"], top_k=top_k)
        assert [entry["index"] for entry in out["ranking"]] == [entry["corpus_id"] for entry in ranked]
        np.testing.assert_allclose([entry["score"] for entry in out["ranking"]], [entry["score"] for entry in ranked],
                                   atol=1e-5)


def test_bad_row_fails_naming_it_and_writes_nothing(tiny_model, tmp_path, capsys):
    rows = [*pair_rows(5), {"id": 5, "query": "q", "document": 7}, *pair_rows(3, seed=9)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    target = tmp_path / "out.jsonl"
    target.write_text("previous run\n")
    assert main(["score", str(source), str(target), "--model", str(tiny_model), "--quiet"]) == 2
    assert "line 6 (row 5): 'document' is int, expected a string" in capsys.readouterr().err
    assert target.read_text() == "previous run\n"  # untouched: outputs are renamed into place only on success
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temporary left


def test_errors_file_collects_bad_rows_and_skips_them(tiny_model, encoder, tmp_path):
    good = pair_rows(6)
    lines = [good[0], {"id": 1, "query": "only a query"}, good[1], "{not json", good[2], [1, 2],
             {"id": 6, "query": None, "document": "d"}, *good[3:]]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    summary = score_file(source, tmp_path / "out.parquet", str(tiny_model), errors_path=tmp_path / "bad.jsonl",
                         progress=False)
    assert summary == {**summary, "rows": 10, "scored": 6, "bad_rows": 4}
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("id").to_pylist() == [row["id"] for row in good]
    np.testing.assert_allclose(table.column("score").to_numpy(), expected_scores(encoder, good), atol=1e-5)
    errors = read_jsonl(tmp_path / "bad.jsonl")
    assert [(error["row"], error["error"]) for error in errors] == [
        (1, "'document' is missing"),
        (3, "not valid JSON (Expecting property name enclosed in double quotes)"),
        (5, "expected a JSON object, got list"),
        (6, "'query' is null, expected a string"),
    ]
    assert errors[0]["record"] == {"id": 1, "query": "only a query"}


def test_parquet_null_fails_naming_the_row(tiny_model, tmp_path):
    rows = pair_rows(40)
    rows[23]["document"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    with pytest.raises(BadRowError, match=r"^row 23: 'document' is null, expected a string$"):
        score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", str(tiny_model), rows_per_call=10, progress=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.parquet"]  # no output, no temporary file


def test_scorer_raises_naming_the_row_by_id_column(encoder, tiny_model):
    table = pa.Table.from_pylist([{"qid": "a", "query": "q", "document": "d"}, {"qid": "b", "query": "q", "document": None}])
    scorer = Scorer.__new__(Scorer)  # the loaded encoder stands in for the one Scorer.__init__ would load
    scorer.spec, scorer.encoder = ScoringSpec(model=str(tiny_model), id_column="qid"), encoder
    with pytest.raises(BadRowError, match=r"^row b: 'document' is null, expected a string$"):
        scorer(table)
    scorer.spec = scorer.spec.replace(bad_rows="keep")
    kept = scorer(table)
    assert kept.column("error").to_pylist() == [None, "'document' is null, expected a string"]
    assert kept.column("score").to_pylist()[1] is None
    assert kept.column("score").to_pylist()[0] == pytest.approx(float(encoder.predict(("q", "d"))), abs=1e-6)


def test_exporting_backends_load_once_in_the_driver_and_pin_the_variant(monkeypatch):
    import crossenc
    from crossenc.distributed.ray_data import warm_exports

    loads = []

    class RecordingEncoder:
        def __init__(self, model, **kwargs):
            loads.append(kwargs)

        def info(self):
            return {"backend": "onnx", "variant": "optimized"}

        def close(self):
            pass

    monkeypatch.setattr(crossenc, "CrossEncoder", RecordingEncoder)
    torch_spec = ScoringSpec(model="m")
    assert warm_exports(torch_spec) is torch_spec and loads == []  # torch exports nothing: no load in the driver
    pinned = warm_exports(ScoringSpec(model="m", backend="onnx", device="cuda"))
    assert (pinned.backend, pinned.variant) == ("onnx", "optimized")
    assert [(load["backend"], load["variant"], load["device"]) for load in loads] == [("onnx", None, "cpu")]


# ---------------------------------------------------------------- on Ray
def test_threads_per_actor_split_the_cpus(local_ray):
    from crossenc.distributed.ray_data import resources_per_actor

    assert resources_per_actor(1, None, 0) == (2.0, 2)
    assert resources_per_actor(2, None, 0) == (1.0, 1)
    assert resources_per_actor(3, None, 0) == (1.0, 1)
    assert resources_per_actor(2, None, 1) == (1.0, 1)  # GPU actors: one CPU each unless told
    assert resources_per_actor(1, 0.5, 0) == (0.5, 1)
    with pytest.raises(ValueError, match="num_gpus"):
        score_dataset(local_ray.data.from_items([{"query": "q", "document": "d"}]), "m", device="cuda")

def test_score_dataset_pairs_match_predict_in_input_order(local_ray, tiny_model, encoder):
    rows = pair_rows(300)
    ds = local_ray.data.from_arrow(blocks_of(rows, 16))
    scored = score_dataset(ds, str(tiny_model), concurrency=2, rows_per_call=16).take_all()
    assert [row["id"] for row in scored] == list(range(300))
    assert [row["extra"] for row in scored] == [row["extra"] for row in rows]
    np.testing.assert_allclose([row["score"] for row in scored], expected_scores(encoder, rows), atol=1e-5)


@pytest.mark.slow
def test_killed_actor_is_replaced_and_every_row_comes_once(local_ray, tiny_model, encoder, tmp_path):
    rows = pair_rows(200, seed=5)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    killed: list[int] = []
    done = threading.Event()

    def kill_first_scorer() -> None:
        while not done.is_set() and not killed:
            pids = [int(path.name) for path in pid_dir.iterdir() if path.name.isdigit()]
            if pids:
                os.kill(pids[0], signal.SIGKILL)  # the actor process, mid-job: 25 blocks of 0.3 s remain
                killed.append(pids[0])
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_first_scorer)
    watcher.start()
    try:
        ds = local_ray.data.from_arrow(blocks_of(rows, 8))
        scored = score_dataset(ds, str(tiny_model), concurrency=2, rows_per_call=8,
                               predict_kwargs={"activation_fn": SlowSigmoid(str(pid_dir), 0.3)}).take_all()
    finally:
        done.set()
        watcher.join()
    assert killed, "no scorer reported its pid"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    reports = [path.read_text() for path in pid_dir.iterdir() if path.name.isdigit()]
    assert len(reports) >= 3  # two actors and the replacement of the killed one
    assert set(reports) == {"1 1"}  # 2 actors on 2 CPUs: 1 torch, 1 tokenizer thread
    assert [row["id"] for row in scored] == list(range(200))  # once each, in order, despite the retried blocks
    np.testing.assert_allclose([row["score"] for row in scored], expected_scores(encoder, rows), atol=1e-5)


@pytest.mark.slow
def test_cli_ray_local_lists_match_in_process_and_rank_with_errors_file(local_ray, tiny_model, encoder, tmp_path):
    rows = list_rows(60)
    rows[4]["documents"] = ["fine", None, "fine"]  # Parquet is typed: nulls are the bad rows the actors find
    rows[41]["documents"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    common = ["--model", str(tiny_model), "--layout", "lists", "--top-k", "3", "--rows-per-call", "8", "--quiet"]
    assert main(["score", str(tmp_path / "in.parquet"), str(tmp_path / "local.jsonl"),
                 "--errors", str(tmp_path / "local-bad.jsonl"), *common]) == 0
    assert main(["score", str(tmp_path / "in.parquet"), str(tmp_path / "ray.jsonl"), "--ray", "local",
                 "--concurrency", "2", "--errors", str(tmp_path / "ray-bad.jsonl"),
                 "--summary", str(tmp_path / "summary.json"), *common]) == 0
    good = [row for index, row in enumerate(rows) if index not in (4, 41)]
    on_ray = read_jsonl(tmp_path / "ray.jsonl")
    check_lists(encoder, good, on_ray, top_k=3)
    local = read_jsonl(tmp_path / "local.jsonl")
    assert [row["qid"] for row in local] == [row["qid"] for row in on_ray]
    np.testing.assert_allclose(np.concatenate([row["scores"] for row in on_ray]),
                               np.concatenate([row["scores"] for row in local]), atol=1e-5)
    bad = read_jsonl(tmp_path / "ray-bad.jsonl")
    assert bad == read_jsonl(tmp_path / "local-bad.jsonl")
    assert [(error["row"], error["error"], error["record"]["qid"]) for error in bad] == [
        (4, "'documents'[1] is null, expected a string", "q4"),
        (41, "'documents' is null, expected a list of strings", "q41")]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["rows"], summary["scored"], summary["bad_rows"]) == (60, 58, 2)
    assert (summary["concurrency"], summary["threads_per_actor"]) == (2, 1)  # 2 CPUs split between 2 actors
