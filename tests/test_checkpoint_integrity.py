"""A save never changes weights, and ``.model`` is the complete Hugging Face model (issue #20)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder

st = pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def headless_model(tiny_model, tmp_path_factory):
    """The tiny checkpoint without its classifier: transformers initialises the head at random on load."""
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path_factory.mktemp("headless")
    AutoModelForSequenceClassification.from_pretrained(tiny_model).bert.save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model / name).exists():
            shutil.copy(tiny_model / name, folder / name)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], num_labels=1)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_initialised_head_survives_a_save_as_in_sentence_transformers(headless_model, pairs, tmp_path):
    ours = CrossEncoder(str(headless_model), device="cpu")
    before = ours.predict(pairs)
    ours.save_pretrained(tmp_path / "ours")
    reloaded = CrossEncoder(str(tmp_path / "ours"), device="cpu")
    _assert_same_weights(reloaded.model, ours.model)
    # Equal weights at other addresses may round one score by an ulp (SIMD alignment): 1e-6, not bytes.
    np.testing.assert_allclose(reloaded.predict(pairs), before, atol=1e-6, rtol=0)
    reference = st.CrossEncoder(str(headless_model), device="cpu")
    reference.save_pretrained(str(tmp_path / "reference"))
    _assert_same_weights(st.CrossEncoder(str(tmp_path / "reference"), device="cpu").model, reference.model)


def _assert_same_weights(model, expected) -> None:
    got, want = model.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    assert [name for name in want if not torch.equal(got[name], want[name])] == []


@pytest.mark.parametrize("variant", ["sdpa", "eager", "compile"])
def test_edited_weights_are_scored_and_saved(tiny_model, pairs, tmp_path, variant):
    ours = CrossEncoder(str(tiny_model), device="cpu", variant=variant)
    before = ours.predict(pairs)
    with torch.no_grad():
        ours.model.classifier.bias += 0.5
    edited = ours.predict(pairs)
    assert not np.allclose(edited, before)  # the fast path runs the weights of ``.model``
    ours.save_pretrained(tmp_path / "edited")
    reloaded = CrossEncoder(str(tmp_path / "edited"), device="cpu", variant=variant)
    _assert_same_weights(reloaded.model, ours.model)
    np.testing.assert_allclose(reloaded.predict(pairs), edited, atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", ["sdpa", "bf16", "int8"])
def test_model_is_the_complete_hugging_face_model(tiny_model, pairs, variant):
    from transformers import BertForSequenceClassification

    ours = CrossEncoder(str(tiny_model), device="cpu", variant=variant)
    assert isinstance(ours.model, BertForSequenceClassification)
    assert len(ours.model.bert.encoder.layer) == ours.config.num_hidden_layers
    assert ours.model.bert.pooler is not None
    if variant != "sdpa":
        return
    features = ours.tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                              return_tensors="pt")
    with torch.no_grad():
        logits = ours.model(**features).logits.numpy()
    np.testing.assert_allclose(logits, ours.predict_logits(pairs), atol=1e-5, rtol=0)


def test_packed_variant_saves_the_checkpoint_weights(tiny_model, pairs, tmp_path):
    ours = CrossEncoder(str(tiny_model), device="cpu", variant="packed")
    ours.save_pretrained(tmp_path / "packed")
    np.testing.assert_allclose(
        CrossEncoder(str(tmp_path / "packed"), device="cpu").predict(pairs), ours.predict(pairs), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("variant", ["packed", "int8"])
def test_save_refused_where_initialised_weights_are_not_held_as_a_checkpoint(headless_model, tmp_path, variant):
    ours = CrossEncoder(str(headless_model), device="cpu", variant=variant)
    with pytest.raises(ValueError, match="initialises at random.*classifier"):
        ours.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_of_a_checkpoint_without_its_head_is_refused(headless_model, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="an ONNX export would not reproduce"):
        CrossEncoder(str(headless_model), device="cpu", backend="onnx")


def test_save_alias(tiny_encoder):
    assert tiny_encoder.save == tiny_encoder.save_pretrained
