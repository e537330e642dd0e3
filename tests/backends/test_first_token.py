"""First-token last layer: the export wrapper equals the Hugging Face model on every supported architecture."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from crossenc.backends.torch_backend.first_token import FirstTokenLastLayer, first_token_model, last_layer_note
from tests.kernels.test_kernels import build_hf


def _padded_batch(pad_id: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = [1, 2, 9, 17, 5, 30]
    ids = np.full((len(lengths), max(lengths)), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(5, 99, size=length)
        mask[row, :length] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_first_token_wrapper_matches_hf(model_type, attn):
    model, _, pad_id = build_hf(model_type, num_labels=3)
    model.config._attn_implementation = attn
    ids, mask = _padded_batch(pad_id)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        wrapped = first_token_model(copy.deepcopy(model))
        got = wrapped(input_ids=ids, attention_mask=mask)["logits"]
    assert isinstance(wrapped, FirstTokenLastLayer) and last_layer_note(wrapped) == "first token only"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert len(getattr(wrapped.base, "encoder").layer) == model.config.num_hidden_layers - 1


def test_unsupported_models_pass_through():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=32)
    model = DistilBertForSequenceClassification(config).eval()
    assert first_token_model(model) is model and last_layer_note(model) == "all tokens"
    with pytest.raises(ValueError, match="first-token export supports"):
        FirstTokenLastLayer(model)
