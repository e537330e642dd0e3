"""Every torch variant that runs on this CPU agrees with eager fp32 within its tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder
from crossenc.hardware import has_cpu_bf16

IDENTITY = torch.nn.Identity()


@pytest.fixture(scope="module")
def eager_logits(tiny_model, pairs):
    return CrossEncoder(str(tiny_model), variant="eager").predict(pairs, activation_fn=IDENTITY)


def test_sdpa_matches_eager(tiny_model, pairs, eager_logits):
    logits = CrossEncoder(str(tiny_model), variant="sdpa").predict(pairs, activation_fn=IDENTITY)
    np.testing.assert_allclose(logits, eager_logits, atol=1e-5, rtol=0)


@pytest.mark.skipif(not has_cpu_bf16(), reason="CPU lacks AVX512_BF16/AMX")
def test_bf16_autocast_close_to_eager(tiny_model, pairs, eager_logits):
    encoder = CrossEncoder(str(tiny_model), variant="bf16")
    assert encoder.info()["precision"] == "bf16"
    logits = encoder.predict(pairs, activation_fn=IDENTITY)
    assert np.abs(logits - eager_logits).max() < 5e-2
    assert np.corrcoef(logits, eager_logits)[0, 1] > 0.99


@pytest.mark.slow
def test_compile_matches_eager_without_recompiles(tiny_model, pairs, eager_logits):
    from torch._dynamo.utils import counters

    encoder = CrossEncoder(str(tiny_model), variant="compile")
    graphs_after_warmup = counters["stats"]["unique_graphs"]
    logits = encoder.predict(pairs, batch_size=5, activation_fn=IDENTITY)
    encoder.predict(pairs[:3], batch_size=2)
    np.testing.assert_allclose(logits, eager_logits, atol=1e-4, rtol=0)
    assert counters["stats"]["unique_graphs"] == graphs_after_warmup, "new lengths caused recompiles"


@pytest.mark.slow
def test_int8_close_to_eager(tiny_model, pairs, eager_logits):
    pytest.importorskip("torchao")
    encoder = CrossEncoder(str(tiny_model), variant="int8")
    logits = encoder.predict(pairs, activation_fn=IDENTITY)
    assert np.corrcoef(logits, eager_logits)[0, 1] > 0.98


def test_int8_scores_a_lone_pair_as_in_a_batch(tiny_model, pairs, eager_logits):
    """torch 2.13's inductor gave a one-pair int8 batch random logits (NaN with AVX2 code), so predict([pair])
    and the last one-row batch of a call were wrong; such batches now run with the row repeated."""
    pytest.importorskip("torchao")
    encoder = CrossEncoder(str(tiny_model), variant="int8")
    batched = encoder.predict(pairs[:8], activation_fn=IDENTITY)
    alone = [float(encoder.predict([pair], activation_fn=IDENTITY)[0]) for pair in pairs[:8] for _ in range(2)]
    np.testing.assert_allclose(alone, np.repeat(batched, 2), atol=0.03, rtol=0)  # int8 rounding moves with shape
    np.testing.assert_allclose(alone, np.repeat(eager_logits[:8], 2), atol=0.15, rtol=0)


def test_fp16_refused_on_cpu(tiny_model):
    with pytest.raises(ValueError, match="CUDA"):
        CrossEncoder(str(tiny_model), variant="fp16", device="cpu")


def test_unknown_variant(tiny_model):
    with pytest.raises(ValueError, match="unknown variant"):
        CrossEncoder(str(tiny_model), variant="fp8")


def test_last_layer_runs_first_token_only_except_eager(tiny_model, pairs):
    eager = CrossEncoder(str(tiny_model), variant="eager")
    sdpa = CrossEncoder(str(tiny_model), variant="sdpa")
    full = CrossEncoder(str(tiny_model), variant="sdpa", backend_kwargs={"first_token": False})
    assert eager.info()["details"]["last_layer"] == "all tokens" == full.info()["details"]["last_layer"]
    assert sdpa.info()["details"]["last_layer"] == "first token only"
    reference = eager.predict_logits(pairs)
    np.testing.assert_allclose(sdpa.predict_logits(pairs), reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(full.predict_logits(pairs), reference, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="first_token"):
        CrossEncoder(str(tiny_model), variant="sdpa", backend_kwargs={"first_token": "yes"})
    with pytest.raises(ValueError, match="unknown torch backend option.*in_fligth"):
        CrossEncoder(str(tiny_model), variant="sdpa", backend_kwargs={"in_fligth": 2})
