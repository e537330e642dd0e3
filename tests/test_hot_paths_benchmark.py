"""pytest-benchmark suite of the hot paths; compare runs with `pytest --benchmark-compare`.

Timings are recorded, never asserted: the regression gate is `crossenc bench --compare`.
"""

from __future__ import annotations

import numpy as np
import pytest

from crossenc.batching import collate, encode_pairs, plan_batches

pytest.importorskip("pytest_benchmark")


@pytest.fixture(scope="module")
def encoded(tiny_encoder, pairs):
    return encode_pairs(tiny_encoder.tokenizer, pairs * 4, tiny_encoder.max_length, True)


def test_tokenize(benchmark, tiny_encoder, pairs):
    result = benchmark(encode_pairs, tiny_encoder.tokenizer, pairs * 4, tiny_encoder.max_length, True)
    assert len(result) == len(pairs) * 4


def test_plan_and_collate(benchmark, encoded):
    def plan_and_collate():
        return [collate(encoded, indices, 0) for indices in plan_batches(encoded.lengths, batch_size=32)]

    batches = benchmark(plan_and_collate)
    assert sum(batch.batch_size for batch in batches) == len(encoded)


def test_one_torch_batch(benchmark, tiny_encoder, encoded):
    batch = collate(encoded, np.arange(32), 0)
    logits = benchmark(tiny_encoder.predictor.predict_logits, batch)
    assert logits.shape == (32, 1)
