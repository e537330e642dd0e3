"""Host pipeline: tokenize-ahead chunks and in-flight batches give the same scores, in input order."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder
from crossenc.backends.torch_backend.in_flight import check_depth, run_in_flight
from crossenc.tokenize_ahead import TokenizeAhead, chunk_offsets, should_tokenize_ahead

IDENTITY = torch.nn.Identity()


def recording_tokenizer() -> tuple[list[str], object]:
    """A stand-in tokenize function that records the first query of every chunk it is given."""
    calls: list[str] = []

    def tokenize(part):
        calls.append(part[0][0])
        return part

    return calls, tokenize


def _wait_until(condition, seconds: float = 30.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        threading.Event().wait(0.05)
    return condition()


def test_chunks_cover_input_in_order():
    pairs = [(str(i), "d") for i in range(10)]
    chunks = list(TokenizeAhead(lambda part: [q for q, _ in part], pairs, chunk_pairs=4))
    assert [offset for offset, _ in chunks] == [0, 4, 8]
    assert [q for _, part in chunks for q in part] == [str(i) for i in range(10)]
    assert list(TokenizeAhead(len, [], 4)) == []
    with pytest.raises(ValueError, match="chunk_pairs"):
        TokenizeAhead(len, pairs, 0)


def test_chunks_ramp_up_from_the_first_chunk():
    """Scoring starts after a small first chunk; sizes double up to chunk_pairs and cover every pair once."""
    assert chunk_offsets(40, 16, 2) == [0, 2, 6, 14, 30]  # sizes 2, 4, 8, 16, then the rest (10)
    assert chunk_offsets(10_000, 2048) == [0, 256, 768, 1792, 3840, 5888, 7936, 9984]
    assert chunk_offsets(10, 4) == [0, 4, 8]  # a first chunk larger than chunk_pairs is cut to it
    assert chunk_offsets(0, 4) == []
    pairs = [(str(i), "d") for i in range(40)]
    chunks = list(TokenizeAhead(lambda part: [q for q, _ in part], pairs, chunk_pairs=16, first_chunk_pairs=2))
    assert [offset for offset, _ in chunks] == [0, 2, 6, 14, 30]
    assert [len(part) for _, part in chunks] == [2, 4, 8, 16, 10]
    assert [q for _, part in chunks for q in part] == [str(i) for i in range(40)]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="first_chunk_pairs"):
            TokenizeAhead(len, pairs, 16, first_chunk_pairs=bad)


def test_next_chunk_is_tokenized_while_the_current_one_is_consumed():
    """The consumer holds chunk 0 until the worker has started chunk 1: without prefetch this times out."""
    second_started = threading.Event()

    def tokenize(part):
        if part[0][0] == "4":
            second_started.set()
        return part

    pairs = [(str(i), "d") for i in range(8)]
    for offset, _ in TokenizeAhead(tokenize, pairs, chunk_pairs=4):
        if offset == 0:
            assert second_started.wait(timeout=30), "chunk 1 was not tokenized ahead"


def test_first_chunk_starts_before_iteration():
    """Made outside the predict lock, the first chunk is already tokenizing when scoring waits for the lock."""
    started = threading.Event()

    def tokenize(part):
        started.set()
        return part

    with TokenizeAhead(tokenize, [("q", "d")] * 4, chunk_pairs=2):
        assert started.wait(timeout=30)


def test_worker_stops_when_the_consumer_fails():
    calls, tokenize = recording_tokenizer()
    pairs = [(str(i), "d") for i in range(40)]
    with pytest.raises(KeyError):
        with TokenizeAhead(tokenize, pairs, chunk_pairs=4) as chunks:
            for offset, _ in chunks:
                raise KeyError(offset)
    # The pool's thread exits once the (at most one) running chunk is done.
    assert _wait_until(lambda: not any(t.name.startswith("crossenc-tokenize") for t in threading.enumerate()), 3)
    assert len(calls) <= 2, f"chunks after the failure were still tokenized: {calls}"


def test_tokenizer_errors_reach_the_caller():
    def tokenize(part):
        if part[0][0] == "4":
            raise RuntimeError("bad chunk")
        return part

    with pytest.raises(RuntimeError, match="bad chunk"):
        list(TokenizeAhead(tokenize, [(str(i), "d") for i in range(8)], chunk_pairs=4))


def test_auto_policy():
    assert should_tokenize_ahead(None, "cuda:0", 10_000, 2048)
    assert not should_tokenize_ahead(None, "cpu", 10_000, 2048)
    assert should_tokenize_ahead(True, "cpu", 10_000, 2048)
    assert not should_tokenize_ahead(True, "cuda", 100, 2048)  # one chunk: nothing to overlap
    assert not should_tokenize_ahead(False, "cuda", 10_000, 2048)


@pytest.mark.parametrize("variant", ["sdpa", "packed"])
def test_tokenize_ahead_scores_equal_one_pass(tiny_model, pairs, variant):
    reference = CrossEncoder(str(tiny_model), variant=variant, tokenize_ahead=False)
    expected = reference.predict(pairs, batch_size=8, activation_fn=IDENTITY)
    chunked = CrossEncoder(str(tiny_model), variant=variant, tokenize_ahead=True)
    chunked.tokenize_ahead_chunk = 7  # 50 pairs -> 8 chunks, the last one short
    got = chunked.predict(pairs, batch_size=8, activation_fn=IDENTITY)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    documents = [document for _, document in pairs]
    ranked = chunked.rank(pairs[0][0], documents, activation_fn=IDENTITY)
    by_id = {entry["corpus_id"]: entry["score"] for entry in ranked}
    direct = reference.predict([(pairs[0][0], document) for document in documents], activation_fn=IDENTITY)
    np.testing.assert_allclose([by_id[index] for index in range(len(documents))], direct, atol=1e-6, rtol=0)
    assert [entry["score"] for entry in ranked] == sorted(by_id.values(), reverse=True)


def test_tokenize_ahead_argument_checked(tiny_model):
    with pytest.raises(TypeError, match="tokenize_ahead"):
        CrossEncoder(str(tiny_model), tokenize_ahead="yes")


@pytest.mark.parametrize("variant", ["sdpa", "packed"])
def test_in_flight_option(tiny_model, pairs, variant):
    expected = CrossEncoder(str(tiny_model), variant=variant).predict(pairs, batch_size=8, activation_fn=IDENTITY)
    encoder = CrossEncoder(str(tiny_model), variant=variant, backend_kwargs={"in_flight": 3})
    assert encoder.info()["details"]["in_flight"] == 3
    np.testing.assert_allclose(encoder.predict(pairs, batch_size=8, activation_fn=IDENTITY), expected, atol=1e-6)
    with pytest.raises(ValueError, match="in_flight=0"):
        CrossEncoder(str(tiny_model), variant=variant, backend_kwargs={"in_flight": 0})


@pytest.mark.parametrize("variant", ["sdpa", "packed"])
def test_in_flight_defaults_to_one_off_cuda(tiny_model, variant):
    assert CrossEncoder(str(tiny_model), variant=variant).info()["details"]["in_flight"] == 1


def test_cuda_defaults_measured_on_an_h100():
    """Without backend_kwargs, CUDA gets 2 batches in flight and packed-fp16 CUDA graphs and Triton kernels."""
    from crossenc.backends.torch_backend.in_flight import default_in_flight
    from crossenc.backends.torch_backend.packed import _parse_options

    assert default_in_flight("cuda") == default_in_flight(torch.device("cuda:1")) == 2
    assert default_in_flight("cpu") == 1
    fp16 = _parse_options({}, "cuda:0", torch.float16)
    assert (fp16["cuda_graphs"], fp16["use_triton"], fp16["in_flight"]) == (True, True, 2)
    bf16 = _parse_options({}, "cuda", torch.bfloat16)
    assert (bf16["cuda_graphs"], bf16["use_triton"], bf16["in_flight"]) == (False, False, 2)  # fp16 only: measured
    cpu = _parse_options({}, "cpu", torch.float32)
    assert (cpu["cuda_graphs"], cpu["use_triton"], cpu["in_flight"]) == (False, False, 1)
    chosen = _parse_options({"cuda_graphs": False, "use_triton": False, "in_flight": 1}, "cuda", torch.float16)
    assert (chosen["cuda_graphs"], chosen["use_triton"], chosen["in_flight"]) == (False, False, 1)


@pytest.mark.parametrize("variant", ["sdpa", "packed"])
def test_pin_inputs_option(tiny_model, pairs, variant):
    """Accepted and reported; on a CPU device it changes nothing (pinning only applies to CUDA copies)."""
    plain = CrossEncoder(str(tiny_model), variant=variant).predict(pairs, activation_fn=IDENTITY)
    pinned = CrossEncoder(str(tiny_model), variant=variant, backend_kwargs={"pin_inputs": True})
    assert pinned.info()["details"]["pin_inputs"] is True
    np.testing.assert_array_equal(pinned.predict(pairs, activation_fn=IDENTITY), plain)
    with pytest.raises(ValueError, match="pin_inputs='yes'"):
        CrossEncoder(str(tiny_model), variant=variant, backend_kwargs={"pin_inputs": "yes"})


def test_run_in_flight_keeps_order_on_cpu():
    batches = [torch.full((rows, 1), float(rows)) for rows in (3, 1, 2)]
    got = list(run_in_flight(lambda batch: batch, batches, torch.device("cpu"), depth=2))
    assert [array.ravel().tolist() for array in got] == [[3.0] * 3, [1.0], [2.0] * 2]
    assert check_depth(2) == 2 and check_depth(np.int64(3)) == 3
    with pytest.raises(ValueError):
        check_depth(True)


@pytest.mark.parametrize("depth", [2, 3])
def test_queue_launches_ahead_and_reads_in_order(depth):
    """With a fake device copy: batch k+depth-1 is launched before batch k is read, results stay in order."""
    events: list[str] = []
    shared = torch.zeros(4, 1)  # one static output buffer, as a CUDA graph has

    def launch(batch: torch.Tensor) -> torch.Tensor:
        events.append(f"launch {int(batch[0, 0])}")
        shared[: len(batch)] = batch
        return shared[: len(batch)]

    def start_copy(logits: torch.Tensor):
        copy = logits.clone()  # the copy is taken at launch time, in stream order

        def ready():
            events.append(f"read {int(copy[0, 0])}")
            return copy.numpy()

        return ready

    batches = [torch.full((rows, 1), float(index)) for index, rows in enumerate((3, 1, 2, 4, 1))]
    got = list(run_in_flight(launch, batches, torch.device("cpu"), depth, start_copy=start_copy))
    assert [array[0, 0] for array in got] == [0, 1, 2, 3, 4] and [len(a) for a in got] == [3, 1, 2, 4, 1]
    assert events.index(f"launch {depth - 1}") < events.index("read 0")
    for k in range(5):  # launching batch k never makes more than ``depth`` batches unread
        reads_before = sum(event.startswith("read") for event in events[: events.index(f"launch {k}")])
        assert k - reads_before + 1 <= depth


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_run_in_flight_on_cuda_with_a_reused_output_buffer():  # pragma: no cover - GPU machines only
    device = torch.device("cuda")
    batches = [torch.randn(rows, 2, device=device) for rows in (5, 7, 1, 9)]
    out = torch.empty(9, 2, device=device)

    def launch(batch):
        out[: len(batch)].copy_(batch * 2)
        return out[: len(batch)]

    got = list(run_in_flight(launch, batches, device, depth=3))
    for batch, array in zip(batches, got):
        np.testing.assert_array_equal(array, (batch * 2).cpu().numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_copies_keep_their_values_when_the_host_array_is_reused():  # pragma: no cover - GPU machines only
    from crossenc.backends.torch_backend.in_flight import to_device

    device, host = torch.device("cuda"), np.zeros(1 << 20, dtype=np.int64)
    copies = []
    for value in range(8):  # the pinned blocks are freed at once and recycled only after their copies
        host[:] = value
        copies.append(to_device(host, device, pin=True))
    assert [int(copy[0]) for copy in copies] == list(range(8))


def test_pretokenized_scorer_tokenizes_each_list_once(tiny_model, pairs):
    from crossenc.bench.gpu_check import pretokenized_scorer

    score, _ = pretokenized_scorer(tiny_model, "packed", {"in_flight": 2}, 8, 4096, device="cpu")
    first, again = score(pairs), score(pairs)
    assert len(score.encodings) == 1
    expected = CrossEncoder(str(tiny_model), variant="packed").predict(pairs, batch_size=8, activation_fn=IDENTITY)
    np.testing.assert_allclose(first[:, 0], expected, atol=1e-6)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("shape", [(1, 1), (8, 3)])
def test_backend_returning_wrong_shape_is_an_error(tiny_model, pairs, monkeypatch, shape):
    encoder = CrossEncoder(str(tiny_model), variant="sdpa")
    monkeypatch.setattr(encoder.predictor, "predict_many", lambda batches: (np.zeros(shape) for _ in batches))
    with pytest.raises(RuntimeError, match=r"logits of shape .* for a batch of 8 pairs of a 1-label model"):
        encoder.predict(pairs, batch_size=8)


def test_depth_keeps_several_chunks_submitted_and_a_shared_executor_running():
    from concurrent.futures import ThreadPoolExecutor

    submitted, tokenize = recording_tokenizer()
    pairs = [(str(i), "d") for i in range(20)]
    with ThreadPoolExecutor(max_workers=1) as shared:
        ahead = TokenizeAhead(tokenize, pairs, chunk_pairs=4, executor=shared, depth=3)
        chunks = iter(ahead)
        assert next(chunks)[0] == 0
        shared.submit(lambda: None).result()  # everything queued before this has run
        assert submitted == ["0", "4", "8", "12"]  # chunk 0, two ahead, and chunk 3 once chunk 0 was taken
        ahead.close()
        assert shared.submit(lambda: "still running").result() == "still running"
    with pytest.raises(ValueError, match="depth"):
        TokenizeAhead(tokenize, pairs, 4, depth=0)


def test_pair_encoder_survives_pickling(tiny_encoder, pairs):
    import pickle

    from crossenc.pair_encoding import PairEncoder

    for split in (True, False):
        encoder = PairEncoder(tiny_encoder.tokenizer, 24, split=split)
        copy = pickle.loads(pickle.dumps(encoder))
        assert copy.mode == encoder.mode == ("split" if split else "joint")
        a, b = encoder.encode(pairs, True), copy.encode(pairs, True)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.type_ids, b.type_ids) and np.array_equal(a.offsets, b.offsets)


def test_tokenizer_processes_give_the_same_scores(tiny_model, pairs):
    in_process = CrossEncoder(str(tiny_model), tokenize_ahead=False)
    reference = in_process.predict(pairs, activation_fn=IDENTITY)
    pooled = CrossEncoder(str(tiny_model), tokenizer_processes=2)
    pooled.predict(pairs[:5])
    assert pooled._tokenizer_pool is None  # one chunk: tokenized in-process, no workers started
    pooled.tokenize_ahead_chunk = 7  # more than one chunk: the workers tokenize (chunks of one 32-pair batch)
    scores = pooled.predict(pairs, activation_fn=IDENTITY)
    assert pooled._tokenizer_pool is not None and pooled.info()["tokenizer_processes"] == 2
    np.testing.assert_allclose(scores, reference, atol=1e-6, rtol=0)
    documents = [doc for _, doc in pairs]
    ranked, expected = pooled.rank(pairs[0][0], documents), in_process.rank(pairs[0][0], documents)
    np.testing.assert_allclose([r["score"] for r in ranked], [r["score"] for r in expected], atol=1e-6)  # batch neighbours differ
    pooled.close()


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_tokenizer_processes_checked(tiny_model, value):
    with pytest.raises(ValueError, match="tokenizer_processes"):
        CrossEncoder(str(tiny_model), tokenizer_processes=value)


def test_packed_variant_with_tokenizer_processes(tiny_model, pairs):
    reference = CrossEncoder(str(tiny_model), variant="packed", tokenize_ahead=False).predict(pairs)
    pooled = CrossEncoder(str(tiny_model), variant="packed", tokenizer_processes=1)
    pooled.tokenize_ahead_chunk = 16
    np.testing.assert_allclose(pooled.predict(pairs), reference, atol=1e-6)
    assert pooled.last_padding.efficiency == 1.0
    pooled.close()


def test_a_dead_tokenizer_worker_is_replaced_by_a_fresh_pool(tiny_model, pairs):
    import os
    import signal

    encoder = CrossEncoder(str(tiny_model), tokenizer_processes=1)
    encoder.tokenize_ahead_chunk = 10
    expected = encoder.predict(pairs)
    pool = encoder.tokenizer_pool()
    for pid in list(pool.executor._processes):
        os.kill(pid, signal.SIGKILL)
    assert _wait_until(lambda: not pool.usable), "the executor never noticed its dead worker"
    np.testing.assert_allclose(encoder.predict(pairs), expected, atol=1e-6)
    assert encoder.tokenizer_pool() is not pool
    encoder.close()


def test_close_stops_the_workers_and_a_later_call_restarts_them(tiny_model, pairs):
    with CrossEncoder(str(tiny_model), tokenizer_processes=1) as encoder:
        encoder.tokenize_ahead_chunk = 10
        expected = encoder.predict(pairs)
        processes = list(encoder.tokenizer_pool().executor._processes.values())
    assert encoder._tokenizer_pool is None
    assert _wait_until(lambda: not any(process.is_alive() for process in processes)), "workers still running"
    np.testing.assert_allclose(encoder.predict(pairs), expected, atol=1e-6)  # starts a new pool
    encoder.close()
    encoder.close()  # idempotent


def test_worker_chunks_keep_every_worker_busy_in_whole_batches():
    from crossenc.tokenizer_processes import process_chunk_pairs

    assert process_chunk_pairs(10_000, 14, 256, 2048) == 512  # ~2 per worker, rounded up to whole batches
    assert process_chunk_pairs(10_000, 2, 256, 2048) == 2048  # capped by the tokenize-ahead chunk
    assert process_chunk_pairs(100, 14, 32, 2048) == 32  # never under one batch


def _on_first_batch(encoder: CrossEncoder, action) -> None:
    """Run ``action`` once, after the first batch of the next call is scored (mid-call, deterministically)."""
    original = encoder.predictor.predict_many

    def predict_many(batches):
        for index, logits in enumerate(original(batches)):
            if index == 0:
                action()
            yield logits

    encoder.predictor.predict_many = predict_many


@pytest.mark.parametrize("processes", [None, 1])
def test_a_call_keeps_its_encoder_when_max_length_changes_midway(tiny_model, processes):
    """Every pair of one call is truncated alike; the new length applies from the next call."""
    long_pairs = [(f"query {i}", "many words here " * 20) for i in range(40)]
    encoder = CrossEncoder(str(tiny_model), tokenize_ahead=True, tokenizer_processes=processes)
    encoder.tokenize_ahead_chunk = 8
    expected_full = encoder.predict(long_pairs, batch_size=8, activation_fn=IDENTITY)
    _on_first_batch(encoder, lambda: setattr(encoder, "max_length", 16))
    during = encoder.predict(long_pairs, batch_size=8, activation_fn=IDENTITY)
    np.testing.assert_allclose(during, expected_full, atol=1e-6)
    after = encoder.predict(long_pairs, batch_size=8, activation_fn=IDENTITY)
    assert np.abs(after - expected_full).min() > 1e-5, "max_length=16 should change every long pair"
    encoder.close()


def test_close_during_a_pooled_call_lets_it_finish(tiny_model, pairs):
    encoder = CrossEncoder(str(tiny_model), tokenizer_processes=1)
    encoder.tokenize_ahead_chunk = 8
    expected = CrossEncoder(str(tiny_model), tokenize_ahead=False).predict(pairs, activation_fn=IDENTITY)
    first_pool = encoder.tokenizer_pool()
    _on_first_batch(encoder, encoder.close)
    np.testing.assert_allclose(encoder.predict(pairs, batch_size=8, activation_fn=IDENTITY), expected, atol=1e-6)
    assert first_pool.closed, "the retired pool closes when its last call ends"
    np.testing.assert_allclose(encoder.predict(pairs, batch_size=8, activation_fn=IDENTITY), expected, atol=1e-6)
    assert encoder.tokenizer_pool() is not first_pool
    encoder.close()


def test_max_length_below_the_special_tokens_is_refused(tiny_model):
    with pytest.raises(ValueError, match="no room for a pair's 3 special tokens"):
        CrossEncoder(str(tiny_model), max_length=2)
    encoder = CrossEncoder(str(tiny_model))
    with pytest.raises(ValueError, match="special tokens"):
        encoder.max_seq_length = 1
