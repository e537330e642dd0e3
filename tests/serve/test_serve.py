"""The reranking server: real HTTP against `crossenc serve` (a subprocess) or an in-process uvicorn,
answers checked against CrossEncoder.predict / rank in this process; the scheduler on its own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import WORDS, build_tiny_model, random_pairs

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from crossenc.serve import ServeSettings, create_app  # noqa: E402
from crossenc.serve.scheduler import QueueFull, Scheduler, ShuttingDown  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5
MAX_DOCUMENTS = 64
MAX_BYTES = 65536


# ---------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen | None = None, log: Path | None = None, limit: float = 90) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text() if log else ''}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"server at {url} not healthy after {limit} s")


@contextlib.contextmanager
def cli_server(model: Path, *args: str, log: Path):
    """`python -m crossenc.cli serve MODEL` on a free loopback port; yields (process, url)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("CROSSENC_API_KEY", None)
    command = [sys.executable, "-m", "crossenc.cli", "serve", str(model), "--device", "cpu", "--port", str(port), *args]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


@contextlib.contextmanager
def thread_server(app):
    """The app on uvicorn in a thread of this process (lifespan included); yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, limit=30)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """conftest's tiny model with a tokenizer that knows its words (conftest's maps every word to [UNK]
    under transformers 5, so scores there depend on lengths only and cannot tell documents apart)."""
    from transformers import BertTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("serve-model") / "model")
    words = (folder / "vocab.txt").read_text().split("\n")[:-1]
    BertTokenizer(vocab={word: index for index, word in enumerate(words)}, model_max_length=128).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model):
    from crossenc import CrossEncoder

    encoder = CrossEncoder(str(tiny_model), device="cpu")
    assert encoder.tokenizer.convert_tokens_to_ids("debian") != encoder.tokenizer.unk_token_id
    return encoder


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    args = ("--max-documents", str(MAX_DOCUMENTS), "--max-request-bytes", str(MAX_BYTES))
    with cli_server(tiny_model, *args, log=log) as (_, url):
        yield url


class GatedEncoder:
    """A CrossEncoder whose scoring waits for ``gate`` and fails on batches holding the word ``poison``."""

    def __init__(self, inner, poison: str | None = None) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.poison_id = inner.tokenizer.convert_tokens_to_ids(poison) if poison else None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_tokenized(self, encoded, **kwargs):
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        if self.poison_id is not None and (encoded.ids == self.poison_id).any():
            raise ValueError("poisoned batch")
        return self.inner.predict_tokenized(encoded, **kwargs)


def wait_for(condition, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in a Prometheus exposition (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                return sample.value
    return 0.0


def query_and_documents(count: int, seed: int) -> tuple[str, list[str]]:
    pairs = random_pairs(count, seed=seed)
    return pairs[0][0], [document for _, document in pairs]


def assert_rerank_matches(results: list[dict], expected: np.ndarray, key: str, top: int | None = None) -> None:
    """The ``top`` best indices (all by default) once each, with their expected scores, highest first."""
    indices = [entry["index"] for entry in results]
    assert len(set(indices)) == len(indices) == (top or len(expected))
    got = np.array([entry[key] for entry in results])
    np.testing.assert_allclose(got, expected[indices], atol=ATOL, rtol=0)
    np.testing.assert_allclose(got, np.sort(expected)[::-1][: len(got)], atol=ATOL, rtol=0)  # the best ones
    assert (np.diff(got) <= 0).all(), "results are not sorted by score"


# ---------------------------------------------------------------------- routes, happy paths
def test_rerank_tei_matches_crossencoder(server, tiny_encoder, tiny_model):
    query, documents = query_and_documents(12, seed=3)
    documents.append("")  # empty texts are valid
    scores = tiny_encoder.predict([(query, document) for document in documents])
    reply = httpx.post(f"{server}/rerank", json={"query": query, "texts": documents, "return_text": True})
    assert reply.status_code == 200, reply.text
    assert_rerank_matches(reply.json(), scores, "score")
    assert all(entry["text"] == documents[entry["index"]] for entry in reply.json())

    raw = httpx.post(f"{server}/rerank", json={"query": query, "texts": documents, "raw_scores": True}).json()
    logits = tiny_encoder.predict([(query, document) for document in documents], activation_fn=torch.nn.Identity())
    assert_rerank_matches(raw, logits, "score")
    assert "text" not in raw[0]


def test_rerank_tei_truncation_directions(server, tiny_encoder, tiny_model):
    query = "debian package"
    documents = ["kernel driver " + " ".join(WORDS) * 3 + " audio video", "short text"]
    pairs = [(query, document) for document in documents]
    right = httpx.post(f"{server}/rerank", json={"query": query, "texts": documents, "truncate": True})
    assert right.status_code == 200, right.text
    assert_rerank_matches(right.json(), tiny_encoder.predict(pairs), "score")

    left_encoder = type(tiny_encoder)(str(tiny_model), device="cpu", processor_kwargs={"truncation_side": "left"})
    expected_left = left_encoder.predict(pairs)
    assert abs(expected_left[0] - tiny_encoder.predict(pairs)[0]) > 1e-4  # the direction changes the answer
    body = {"query": query, "texts": documents, "truncate": True, "truncation_direction": "Left"}
    left = httpx.post(f"{server}/rerank", json=body)
    assert left.status_code == 200, left.text
    assert_rerank_matches(left.json(), expected_left, "score")


def test_cohere_v1_rerank(server, tiny_encoder):
    query, documents = query_and_documents(9, seed=4)
    sent = [document if index % 2 else {"text": document} for index, document in enumerate(documents)]
    body = {"model": "any", "query": query, "documents": sent, "top_n": 3, "return_documents": True}
    reply = httpx.post(f"{server}/v1/rerank", json=body)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    expected = tiny_encoder.predict([(query, document) for document in documents])
    assert_rerank_matches(answer["results"], expected, "relevance_score", top=3)
    assert all(entry["document"]["text"] == documents[entry["index"]] for entry in answer["results"])
    tokens = tiny_encoder.tokenize_pairs([(query, document) for document in documents]).lengths.sum()
    assert answer["usage"]["total_tokens"] == tokens
    assert answer["meta"]["api_version"]["version"] == "1" and isinstance(answer["id"], str)

    every = httpx.post(f"{server}/v1/rerank", json={"query": query, "documents": documents}).json()["results"]
    assert len(every) == len(documents) and "document" not in every[0]


def test_cohere_v2_rerank_token_caps(server, tiny_encoder):
    # Every word of WORDS is one token of the tiny vocabulary: N tokens are the first N words.
    query = "open source fast database query"
    documents = ["the linux kernel driver for audio", "a small python web server", "font"]
    body = {"query": query, "documents": documents, "max_tokens_per_doc": 3, "max_tokens_per_query": 2}
    reply = httpx.post(f"{server}/v2/rerank", json=body)
    assert reply.status_code == 200, reply.text
    capped = [(" ".join(query.split()[:2]), " ".join(document.split()[:3])) for document in documents]
    assert_rerank_matches(reply.json()["results"], tiny_encoder.predict(capped), "relevance_score")
    assert reply.json()["meta"]["api_version"]["version"] == "2"
    uncapped = tiny_encoder.predict([(query, document) for document in documents])
    assert np.abs(uncapped - tiny_encoder.predict(capped)).max() > 1e-4  # the caps change the answer


def test_predict_route(server, tiny_encoder):
    pairs = random_pairs(20, seed=5)
    reply = httpx.post(f"{server}/predict", json={"pairs": pairs})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["scores"], tiny_encoder.predict(pairs), atol=ATOL, rtol=0)
    raw = httpx.post(f"{server}/predict", json={"pairs": pairs, "raw_scores": True}).json()["scores"]
    np.testing.assert_allclose(raw, tiny_encoder.predict(pairs, activation_fn=torch.nn.Identity()), atol=ATOL, rtol=0)
    assert httpx.post(f"{server}/predict", json={"pairs": []}).json() == {"scores": []}


def test_health_info_metrics(server, tiny_model):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/info").json()
    assert (info["backend"], info["variant"], info["precision"], info["max_length"]) == ("torch", "sdpa", "fp32", 128)
    assert info["model"] == str(tiny_model) and info["server"]["max_documents"] == MAX_DOCUMENTS
    assert "api_key" not in info["server"]
    query, documents = query_and_documents(10, seed=6)
    assert httpx.post(f"{server}/rerank", json={"query": query, "texts": documents}).status_code == 200
    text = httpx.get(f"{server}/metrics").text
    assert metric(text, "crossenc_requests_total", route="/rerank", status="200") >= 1
    assert metric(text, "crossenc_request_duration_seconds_count", route="/rerank") >= 1
    assert metric(text, "crossenc_batch_pairs_sum") >= 10 and metric(text, "crossenc_batch_tokens_sum") > 0
    assert 0 < metric(text, "crossenc_padding_efficiency") <= 1
    assert metric(text, "crossenc_real_tokens_total") <= metric(text, "crossenc_padded_tokens_total")
    assert metric(text, "crossenc_queue_pairs") == 0 and metric(text, "crossenc_requests_in_progress") == 1


# ---------------------------------------------------------------------- bad input
OVERLONG = " ".join(["the"] * 200)
BAD_JSON = [
    ("/rerank", {"query": "q", "texts": ["a", 3]}, 422, "texts.1"),
    ("/rerank", {"texts": ["a"]}, 422, "query: Field required"),
    ("/rerank", {"query": "q", "texts": []}, 422, "texts"),
    ("/rerank", {"query": None, "texts": ["a"]}, 422, "query"),
    ("/rerank", {"query": "q", "texts": ["a"], "raw_scores": "yes"}, 422, "raw_scores"),
    ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "Middle"}, 422, "truncation_direction"),
    ("/rerank", {"query": "q", "texts": ["a"] * (MAX_DOCUMENTS + 1)}, 422, f"at most {MAX_DOCUMENTS}"),
    ("/rerank", {"query": "q", "texts": ["fine", OVERLONG]}, 422, "texts[1]: the (query, text) pair has 204 tokens"),
    ("/rerank", ["q", "a"], 422, "valid dictionary"),
    ("/v1/rerank", {"query": "q", "documents": []}, 422, "documents"),
    ("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}, 422, "documents.0"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": -1}, 422, "top_n"),
    ("/v2/rerank", {"query": "q", "documents": [{"text": "a"}]}, 422, "documents.0"),
    ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, 422, "max_tokens_per_doc"),
    ("/predict", {"pairs": [["a"]]}, 422, "pairs.0"),
    ("/predict", {"pairs": [["a", "b"]] * (MAX_DOCUMENTS + 1)}, 422, f"at most {MAX_DOCUMENTS}"),
]


def _chunks():
    """A body sent chunked (no Content-Length): only counting while reading can catch it."""
    for _ in range(MAX_BYTES // 1000 + 2):
        yield b" " * 1000


JSON_TYPE = {"content-type": "application/json"}
BAD_RAW = [  # name, httpx.post options (made per call: a generator is used once), status, message part
    ("invalid json", lambda: {"content": b'{"query": "q", "texts": [', "headers": JSON_TYPE}, 422, "not valid JSON"),
    ("form body", lambda: {"data": {"query": "q"}}, 415, "application/json"),
    ("declared too large", lambda: {"content": b" " * (MAX_BYTES + 1), "headers": JSON_TYPE}, 413, "limit of"),
    ("chunked too large", lambda: {"content": _chunks(), "headers": JSON_TYPE}, 413, "limit of"),
]


def assert_error(reply, status: int, fragment: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert fragment in body["error"] and body["error_type"], body


@pytest.mark.parametrize("route, body, status, fragment", BAD_JSON, ids=[f"{case[0]}:{case[3]}" for case in BAD_JSON])
def test_bad_json_bodies_answer_clearly(server, route, body, status, fragment):
    assert_error(httpx.post(f"{server}{route}", json=body), status, fragment)
    assert httpx.post(f"{server}/rerank", json={"query": "q", "texts": ["a"]}).status_code == 200


@pytest.mark.parametrize("name, request_options, status, fragment", BAD_RAW, ids=[case[0] for case in BAD_RAW])
def test_bad_raw_bodies_answer_clearly(server, name, request_options, status, fragment):
    assert_error(httpx.post(f"{server}/rerank", **request_options()), status, fragment)
    assert_error(httpx.get(f"{server}/nowhere"), 404, "Not Found")
    assert httpx.post(f"{server}/rerank", json={"query": "q", "texts": ["a"]}).status_code == 200


def test_metrics_count_refusals(server):
    before = metric(httpx.get(f"{server}/metrics").text, "crossenc_requests_total", route="/rerank", status="422")
    httpx.post(f"{server}/rerank", json={"query": "q", "texts": []})
    after = metric(httpx.get(f"{server}/metrics").text, "crossenc_requests_total", route="/rerank", status="422")
    assert after == before + 1


# ---------------------------------------------------------------------- concurrency
def test_32_concurrent_clients_get_their_own_results(server, tiny_encoder):
    requests = [query_and_documents(1 + (index * 5) % 24, seed=100 + index) for index in range(32)]
    scores = tiny_encoder.predict([(query, document) for query, documents in requests for document in documents])
    expected = np.split(scores, np.cumsum([len(documents) for _, documents in requests])[:-1])
    start = threading.Barrier(len(requests))

    def ask(request):
        query, documents = request
        with httpx.Client(timeout=60) as client:
            start.wait()
            return client.post(f"{server}/rerank", json={"query": query, "texts": documents})

    with ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(ask, requests))
    for reply, scores in zip(replies, expected):
        assert reply.status_code == 200, reply.text
        assert_rerank_matches(reply.json(), scores, "score")


# ---------------------------------------------------------------------- in-process servers
def test_api_key(tiny_encoder):
    with thread_server(create_app(tiny_encoder, ServeSettings(api_key="s3cret"))) as url:
        body = {"query": "q", "texts": ["a", "b"]}
        assert httpx.get(f"{url}/health").status_code == 200  # probes need no key
        missing = httpx.post(f"{url}/rerank", json=body)
        assert_error(missing, 401, "Authorization: Bearer")
        assert missing.headers["www-authenticate"] == "Bearer"
        for header in ("Bearer wrong", "Basic s3cret", "s3cret"):
            assert_error(httpx.post(f"{url}/rerank", json=body, headers={"Authorization": header}), 401, "API key")
        assert_error(httpx.get(f"{url}/metrics"), 401, "API key")
        good = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["a"]},
                          headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200, good.text


def test_queue_full_answers_429_with_retry_after(tiny_encoder):
    gated = GatedEncoder(tiny_encoder)
    app = create_app(gated, ServeSettings(max_documents=8, max_queue_pairs=8))
    scheduler = app.state.crossenc.scheduler
    with thread_server(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{url}/rerank", json={"query": "q", "texts": ["a"] * 8}, timeout=60)
        wait_for(lambda: gated.entered.is_set() and scheduler.queued_pairs == 8)
        refused = httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["b"]})
        assert_error(refused, 429, "busy")
        assert int(refused.headers["retry-after"]) >= 1 and refused.json()["error_type"] == "overloaded"
        gated.gate.set()
        assert first.result().status_code == 200 and len(first.result().json()) == 8
        assert httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["b"]}).status_code == 200
        text = httpx.get(f"{url}/metrics").text
        assert metric(text, "crossenc_rejected_requests_total", reason="queue_full") == 1


def test_request_timeout_answers_504_and_recovers(tiny_encoder):
    gated = GatedEncoder(tiny_encoder)
    app = create_app(gated, ServeSettings(request_timeout=0.3))
    with thread_server(app) as url:
        assert_error(httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a"]}), 504, "timeout")
        gated.gate.set()
        assert httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a"]}).status_code == 200
        wait_for(lambda: app.state.crossenc.scheduler.queued_pairs == 0)


def test_backend_error_answers_500_json_and_spares_others(tiny_encoder):
    gated = GatedEncoder(tiny_encoder, poison="slow")
    gated.gate.set()
    with thread_server(create_app(gated)) as url:
        assert_error(httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a slow game"]}), 500, "poisoned")
        assert httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a fast game"]}).status_code == 200


def test_multi_label_model_predict_and_rerank(tiny_model_3labels):
    from crossenc import CrossEncoder

    encoder = CrossEncoder(str(tiny_model_3labels), device="cpu")
    pairs = random_pairs(6, seed=7)
    with thread_server(create_app(encoder)) as url:
        reply = httpx.post(f"{url}/predict", json={"pairs": pairs, "apply_softmax": True})
        assert reply.status_code == 200, reply.text
        expected = encoder.predict(pairs, apply_softmax=True)
        np.testing.assert_allclose(reply.json()["scores"], expected, atol=ATOL, rtol=0)
        assert_error(httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a"]}), 422, "3 labels")


# ---------------------------------------------------------------------- the scheduler alone
def _logits(encoder, pairs):
    return encoder.predict(pairs, activation_fn=torch.nn.Identity()).reshape(len(pairs), -1)


@pytest.mark.parametrize("poisoned", [None, 3], ids=["all-good", "one-fails"])
def test_scheduler_merges_requests_and_isolates_a_failing_one(tiny_encoder, poisoned):
    gated = GatedEncoder(tiny_encoder, poison="slow")
    groups = []
    scheduler = Scheduler(gated, max_queue_pairs=1000, max_group_pairs=1000, observe=groups.append)
    clean = [word for word in WORDS if word != "slow"]
    requests = [[(f"query {index}", " ".join(clean[index : 2 * index + 3]))] * (2 + index) for index in range(6)]
    if poisoned is not None:
        requests[poisoned] = [("query", "a slow game"), ("query", "a fast game")]
    try:
        futures = [scheduler.submit(requests[0])]
        wait_for(gated.entered.is_set)  # the first request holds the scorer: the others queue up together
        futures += [scheduler.submit(pairs) for pairs in requests[1:]]
        gated.gate.set()
        for index, (future, pairs) in enumerate(zip(futures, requests)):
            if index == poisoned:
                with pytest.raises(ValueError, match="poisoned"):
                    future.result(30)
            else:
                np.testing.assert_allclose(future.result(30).logits, _logits(tiny_encoder, pairs), atol=ATOL, rtol=0)
        # However the tokenizer split requests 1-5 (all queued behind the gate), one group holds >= 3 of them,
        # request 3 among them.
        assert any(group.requests >= 3 and group.merged_failed == (poisoned is not None) for group in groups), groups
        assert scheduler.queued_pairs == 0 and scheduler.queued_requests == 0
    finally:
        gated.gate.set()
        scheduler.close(30)


def test_scheduler_admission_is_bounded(tiny_encoder):
    gated = GatedEncoder(tiny_encoder)
    scheduler = Scheduler(gated, max_queue_pairs=10, max_group_pairs=100)
    pair = ("query", "document")
    try:
        first = scheduler.submit([pair] * 6)
        with pytest.raises(QueueFull) as refused:
            scheduler.submit([pair] * 5)
        assert refused.value.retry_after >= 1
        second = scheduler.submit([pair] * 4)  # exactly full
        with pytest.raises(ValueError, match="exceed the queue"):
            scheduler.submit([pair] * 11)
        gated.gate.set()
        assert first.result(30).logits.shape == (6, 1) and second.result(30).logits.shape == (4, 1)
        wait_for(lambda: scheduler.queued_pairs == 0)
        assert scheduler.submit([pair] * 10).result(30).logits.shape == (10, 1)
    finally:
        gated.gate.set()
        scheduler.close(30)
    with pytest.raises(ShuttingDown):
        scheduler.submit([pair])


def test_scheduler_close_answers_everything_admitted(tiny_encoder):
    gated = GatedEncoder(tiny_encoder)
    scheduler = Scheduler(gated, max_queue_pairs=100, max_group_pairs=2)
    futures = [scheduler.submit([("q", f"document {index}")] * 2) for index in range(5)]
    closer = threading.Thread(target=scheduler.close)
    closer.start()
    time.sleep(0.1)
    assert closer.is_alive()  # close waits for admitted work
    gated.gate.set()
    closer.join(30)
    assert not closer.is_alive()
    assert all(future.result(0).logits.shape == (2, 1) for future in futures)


# ---------------------------------------------------------------------- shutdown
@pytest.mark.slow  # its own server process: ~15 s on 2 busy cores
def test_sigterm_finishes_accepted_requests(tiny_model, tmp_path):
    requests = [query_and_documents(300, seed=200 + index) for index in range(8)]
    args = ("--max-documents", "300", "--max-queue-pairs", "2400")
    with cli_server(tiny_model, *args, log=tmp_path / "server.log") as (process, url):

        def ask(request):
            query, documents = request
            return httpx.post(f"{url}/rerank", json={"query": query, "texts": documents}, timeout=120)

        with ThreadPoolExecutor(len(requests)) as pool:
            replies = [pool.submit(ask, request) for request in requests]

            def all_admitted() -> bool:
                text = httpx.get(f"{url}/metrics").text
                done = metric(text, "crossenc_requests_total", route="/rerank", status="200")
                return metric(text, "crossenc_queue_requests") + done == len(requests)

            wait_for(all_admitted, limit=60)
            in_flight = metric(httpx.get(f"{url}/metrics").text, "crossenc_queue_requests")
            process.send_signal(signal.SIGTERM)
            assert in_flight >= 1, "the work finished before SIGTERM: make it heavier"
            for reply in replies:
                assert reply.result().status_code == 200, reply.result().text
                assert len(reply.result().json()) == 300
        assert process.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")
