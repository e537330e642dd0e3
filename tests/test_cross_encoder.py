"""CrossEncoder.predict / rank semantics, checked against a plain Hugging Face forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder


def hf_reference_logits(model_dir, pairs, max_length=128) -> np.ndarray:
    """Unsorted, one-pair-at-a-time Hugging Face forward in fp32 (eager attention)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    rows = []
    with torch.inference_mode():
        for query, document in pairs:
            enc = tokenizer([query], [document], truncation="longest_first", max_length=max_length, return_tensors="pt")
            rows.append(model(**enc).logits[0].numpy())
    return np.stack(rows)


def test_bucketed_scores_equal_plain_forward(tiny_encoder, tiny_model, pairs):
    reference = torch.sigmoid(torch.from_numpy(hf_reference_logits(tiny_model, pairs))).numpy()[:, 0]
    scores = tiny_encoder.predict(pairs, batch_size=7)
    assert scores.dtype == np.float32 and scores.shape == (len(pairs),)
    np.testing.assert_allclose(scores, reference, atol=1e-5, rtol=0)
    assert np.ptp(scores) > 1e-3, "fixture model gives constant scores: the comparison would be vacuous"


def test_single_pair_gives_scalar(tiny_encoder, pairs):
    single = tiny_encoder.predict(pairs[0])
    assert np.ndim(single) == 0
    assert single == pytest.approx(float(tiny_encoder.predict(pairs[:3])[0]), abs=1e-6)
    assert np.ndim(tiny_encoder.predict(list(pairs[0]))) == 0


def test_output_conversions(tiny_encoder, pairs):
    as_numpy = tiny_encoder.predict(pairs[:5])
    as_tensor = tiny_encoder.predict(pairs[:5], convert_to_tensor=True)
    as_list = tiny_encoder.predict(pairs[:5], convert_to_numpy=False)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    assert isinstance(as_list, list) and all(isinstance(item, torch.Tensor) for item in as_list)
    np.testing.assert_allclose(as_tensor.numpy(), as_numpy)
    np.testing.assert_allclose(torch.stack(as_list).numpy(), as_numpy)


def test_activation_rules(tiny_encoder, pairs):
    logits = tiny_encoder.predict(pairs[:8], activation_fn=torch.nn.Identity())
    sigmoid = tiny_encoder.predict(pairs[:8])
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert isinstance(tiny_encoder.activation_fn, torch.nn.Sigmoid)


def test_multilabel_identity_and_softmax(tiny_model_3labels, pairs):
    encoder = CrossEncoder(str(tiny_model_3labels), device="cpu")
    assert isinstance(encoder.activation_fn, torch.nn.Identity)
    raw = encoder.predict(pairs[:6])
    assert raw.shape == (6, 3)
    soft = encoder.predict(pairs[:6], apply_softmax=True)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(soft, torch.softmax(torch.from_numpy(raw), 1).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="num_labels=1"):
        encoder.rank("q", ["a", "b"])


def test_saved_activation_and_explicit_override(tmp_path, tiny_encoder, pairs):
    tanh_encoder = CrossEncoder(str(tiny_encoder.model_dir), activation_fn=torch.nn.Tanh())
    saved = tanh_encoder.save_pretrained(tmp_path / "saved")
    reloaded = CrossEncoder(str(saved))
    assert isinstance(reloaded.activation_fn, torch.nn.Tanh)
    np.testing.assert_allclose(reloaded.predict(pairs[:5]), tanh_encoder.predict(pairs[:5]), atol=1e-6)
    explicit = CrossEncoder(str(saved), activation_fn=torch.nn.Identity())
    assert isinstance(explicit.activation_fn, torch.nn.Identity)


def test_untrusted_custom_activation_falls_back(tmp_path, tiny_encoder):
    import json

    saved = tiny_encoder.save_pretrained(tmp_path / "custom")
    config = json.loads((saved / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": "os.system"}
    (saved / "config.json").write_text(json.dumps(config))
    assert isinstance(CrossEncoder(str(saved)).activation_fn, torch.nn.Sigmoid)


def test_rank_sorted_stable_and_top_k(tiny_encoder):
    documents = ["audio driver", "web server", "audio driver", "font theme", "python module"]
    ranked = tiny_encoder.rank("audio", documents, return_documents=True)
    scores = [entry["score"] for entry in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(entry["score"], float) for entry in ranked)
    assert {entry["corpus_id"] for entry in ranked} == set(range(len(documents)))
    assert all(entry["text"] == documents[entry["corpus_id"]] for entry in ranked)
    duplicate_positions = [entry["corpus_id"] for entry in ranked if entry["text"] == "audio driver"]
    assert duplicate_positions == [0, 2], "equal scores must keep input order"
    top = tiny_encoder.rank("audio", documents, top_k=2)
    assert [entry["corpus_id"] for entry in top] == [entry["corpus_id"] for entry in ranked[:2]]
    assert "text" not in top[0]
    assert tiny_encoder.rank("audio", documents, top_k=0) == []
    assert tiny_encoder.rank("audio", []) == []


def test_max_length_default_and_truncation(tiny_model, pairs):
    encoder = CrossEncoder(str(tiny_model), max_length=16)
    assert encoder.max_length == 16
    long_pair = ("the package", " ".join(["network"] * 500))
    reference = hf_reference_logits(tiny_model, [long_pair], max_length=16)
    np.testing.assert_allclose(
        encoder.predict(long_pair, activation_fn=torch.nn.Identity()), reference[0, 0], atol=1e-5
    )
    assert CrossEncoder(str(tiny_model)).max_length == 128


def test_padding_efficiency_reported(tiny_encoder, pairs):
    tiny_encoder.predict(pairs, batch_size=8)
    stats = tiny_encoder.last_padding
    assert stats.batches == 7 and 0.5 < stats.efficiency <= 1.0
    assert stats.real_tokens > 0


def test_info_and_repr(tiny_encoder):
    info = tiny_encoder.info()
    assert info["backend"] == "torch" and info["variant"] == "sdpa" and info["precision"] == "fp32"
    assert info["num_labels"] == 1 and info["max_length"] == 128
    assert "sdpa" in repr(tiny_encoder)


def test_progress_bar(tiny_encoder, pairs, capsys):
    tiny_encoder.predict(pairs[:10], show_progress_bar=True)
    assert "Scoring" in capsys.readouterr().err


def test_pickle_weights_refused_unless_allowed(tmp_path, tiny_model):
    import shutil

    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        CrossEncoder(str(folder))
    # Loaded from the pickle, the weights are the same as the safetensors original's: same score.
    loaded = CrossEncoder(str(folder), allow_pickle=True).predict(("a", "b"))
    assert loaded == pytest.approx(float(CrossEncoder(str(tiny_model)).predict(("a", "b"))), abs=1e-6)


def test_half_precision_checkpoint_loads_fp32_unless_asked(tmp_path, tiny_model, pairs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    half = tmp_path / "half"
    AutoModelForSequenceClassification.from_pretrained(tiny_model).half().save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(half)
    default = CrossEncoder(str(half))
    assert {p.dtype for p in default.predictor.module.parameters()} == {torch.float32}
    assert default.info()["precision"] == "fp32"
    asked = CrossEncoder(str(half), model_kwargs={"dtype": torch.bfloat16})
    assert {p.dtype for p in asked.predictor.module.parameters()} == {torch.bfloat16}
    assert asked.info()["precision"] == "bf16"


def test_a_backend_not_built_says_so_and_what_to_use(tiny_model):
    from crossenc.backends import BACKENDS
    from crossenc.loading import backend_loader

    with pytest.raises(NotImplementedError, match="TensorRT engine backend is not built.*packed-fp16"):
        CrossEncoder(str(tiny_model), device="cpu", backend="tensorrt")
    with pytest.raises(NotImplementedError):
        backend_loader("tensorrt")
    for name in BACKENDS:  # every registered backend has a loader module
        assert callable(backend_loader(name))


def test_save_pretrained_keeps_other_files_and_makes_an_ordinary_folder(tiny_encoder, tmp_path):
    import os
    import stat

    fresh = tiny_encoder.save_pretrained(tmp_path / "fresh")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's private 0o700
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    tiny_encoder.save_pretrained(existing)
    assert (existing / "notes.txt").read_text() == "mine" and (existing / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


@pytest.mark.parametrize("variant", ["sdpa", "packed"])
def test_predict_tokenized_equals_predict(tiny_model, pairs, variant):
    encoder = CrossEncoder(str(tiny_model), variant=variant)
    encoded = encoder.tokenize_pairs(pairs)
    expected = encoder.predict(pairs, batch_size=4)
    np.testing.assert_array_equal(encoder.predict_tokenized(encoded, batch_size=4), expected)
    tensor = encoder.predict_tokenized(encoded, convert_to_tensor=True, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(torch.sigmoid(tensor).numpy(), expected, atol=1e-6)
    empty = encoder.tokenize_pairs([])
    assert encoder.predict_tokenized(empty).shape == (0,)


def test_predict_tokenized_refuses_what_the_model_cannot_read(tiny_model, pairs):
    from dataclasses import replace

    from crossenc.inputs import InputTypeError

    encoder = CrossEncoder(str(tiny_model))
    encoded = encoder.tokenize_pairs(pairs)
    refused = {
        "EncodedPairs": pairs,
        "1-D numpy array of integers": replace(encoded, ids=encoded.ids.astype(np.float32)),
        "type ids; EncodedPairs.type_ids is None": replace(encoded, type_ids=None),
        "vocabulary": replace(encoded, ids=encoded.ids + encoder.config.vocab_size),
        "must not be negative": replace(encoded, ids=encoded.ids - 10_000),
        "type_vocab_size": replace(encoded, type_ids=encoded.type_ids + 5),
        "offsets": replace(encoded, offsets=encoded.offsets[:-1]),
        "is empty": replace(encoded, offsets=np.concatenate([[0], encoded.offsets])),
        "at least its 3 special tokens": type(encoded)(
            np.array([101, 102], np.int32), np.zeros(2, np.int8), np.array([0, 2], np.int64)
        ),
        "never decrease": replace(encoded, offsets=np.array([0, 9, 4, len(encoded.ids)], np.uint64)),
    }
    for message, bad in refused.items():
        with pytest.raises((ValueError, InputTypeError), match=message):
            encoder.predict_tokenized(bad)
    longer = CrossEncoder(str(tiny_model))
    encoder.max_length = 8
    with pytest.raises(ValueError, match="max_length=8"):
        encoder.predict_tokenized(longer.tokenize_pairs([("a " * 40, "b " * 40)]))


def test_predict_tokenized_drops_type_ids_a_model_does_not_read(tiny_model, pairs):
    from dataclasses import replace

    encoder = CrossEncoder(str(tiny_model))
    encoded = encoder.tokenize_pairs(pairs)
    encoder.uses_token_type_ids = False  # as for a RoBERTa-style tokenizer (this tiny BERT has 2 type embeddings)
    ones = replace(encoded, type_ids=np.ones_like(encoded.type_ids))
    without = replace(encoded, type_ids=None)
    np.testing.assert_array_equal(encoder.predict_tokenized(ones), encoder.predict_tokenized(without))


def test_pair_tokenizer_pickles_and_matches_tokenize_pairs(tiny_model, pairs):
    import pickle

    encoder = CrossEncoder(str(tiny_model), prompts={"q": "query: "}, default_prompt_name="q")
    tokenizer = pickle.loads(pickle.dumps(encoder.pair_tokenizer()))
    expected = encoder.tokenize_pairs(pairs)
    got = tokenizer(pairs)
    for name in ("ids", "type_ids", "offsets"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert tokenizer.query_prompt == "query: "
    np.testing.assert_array_equal(encoder.predict_tokenized(got), encoder.predict(pairs))
    empty = encoder.pair_tokenizer()([])
    assert len(empty) == 0 and encoder.predict_tokenized(empty).shape == (0,)
