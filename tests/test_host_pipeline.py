"""Host pipeline: tokenize-ahead chunks and in-flight batches give the same scores, in input order."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder
from crossenc.backends.in_flight import check_depth, run_in_flight
from crossenc.tokenize_ahead import should_tokenize_ahead, tokenize_ahead

IDENTITY = torch.nn.Identity()


def test_chunks_cover_input_in_order():
    pairs = [(str(i), "d") for i in range(10)]
    chunks = list(tokenize_ahead(lambda part: [q for q, _ in part], pairs, chunk_pairs=4))
    assert [offset for offset, _ in chunks] == [0, 4, 8]
    assert [q for _, part in chunks for q in part] == [str(i) for i in range(10)]
    assert list(tokenize_ahead(len, [], 4)) == []
    with pytest.raises(ValueError, match="chunk_pairs"):
        list(tokenize_ahead(len, pairs, 0))


def test_next_chunk_is_tokenized_while_the_current_one_is_consumed():
    """The consumer holds chunk 0 until the worker has started chunk 1: without prefetch this times out."""
    second_started = threading.Event()

    def tokenize(part):
        if part[0][0] == "4":
            second_started.set()
        return part

    pairs = [(str(i), "d") for i in range(8)]
    for offset, _ in tokenize_ahead(tokenize, pairs, chunk_pairs=4):
        if offset == 0:
            assert second_started.wait(timeout=30), "chunk 1 was not tokenized ahead"


def test_tokenizer_errors_reach_the_caller():
    def tokenize(part):
        if part[0][0] == "4":
            raise RuntimeError("bad chunk")
        return part

    with pytest.raises(RuntimeError, match="bad chunk"):
        list(tokenize_ahead(tokenize, [(str(i), "d") for i in range(8)], chunk_pairs=4))


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


def test_run_in_flight_keeps_order_on_cpu():
    batches = [torch.full((rows, 1), float(rows)) for rows in (3, 1, 2)]
    got = list(run_in_flight(lambda batch: batch, batches, torch.device("cpu"), depth=2))
    assert [array.ravel().tolist() for array in got] == [[3.0] * 3, [1.0], [2.0] * 2]
    assert check_depth(2) == 2
    with pytest.raises(ValueError):
        check_depth(True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_run_in_flight_on_cuda_matches_sync():  # pragma: no cover - GPU machines only
    device = torch.device("cuda")
    batches = [torch.randn(rows, 2, device=device) for rows in (5, 7, 1, 9)]
    got = list(run_in_flight(lambda batch: batch * 2, batches, device, depth=3))
    for batch, array in zip(batches, got):
        np.testing.assert_array_equal(array, (batch * 2).cpu().numpy())
