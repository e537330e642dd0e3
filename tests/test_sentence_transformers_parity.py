"""crossenc and sentence-transformers give the same scores on the same model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder

st = pytest.importorskip("sentence_transformers")


@pytest.mark.parametrize("fixture_name", ["tiny_model", "tiny_model_3labels"])
def test_predict_matches_sentence_transformers(request, fixture_name, pairs):
    model_dir = str(request.getfixturevalue(fixture_name))
    reference = st.CrossEncoder(model_dir, device="cpu")
    ours = CrossEncoder(model_dir, device="cpu")
    expected = reference.predict(pairs, batch_size=16)
    got = ours.predict(pairs, batch_size=16)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.predict(pairs[0]), reference.predict(pairs[0]), atol=1e-5)


def test_rank_matches_sentence_transformers(tiny_model, pairs):
    reference = st.CrossEncoder(str(tiny_model), device="cpu")
    ours = CrossEncoder(str(tiny_model), device="cpu")
    documents = [document for _, document in pairs[:20]]
    expected = reference.rank("audio driver", documents, top_k=5, return_documents=True)
    got = ours.rank("audio driver", documents, top_k=5, return_documents=True)
    np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in expected], atol=1e-5)
    # Same order, except where two scores tie within float rounding (the random model has near-ties).
    for mine, theirs in zip(got, expected):
        if mine["corpus_id"] != theirs["corpus_id"]:
            assert abs(mine["score"] - theirs["score"]) < 1e-5, (got, expected)
    assert [e["text"] for e in got] == [documents[e["corpus_id"]] for e in got]


@pytest.fixture(scope="module")
def both_3labels(tiny_model_3labels):
    return st.CrossEncoder(str(tiny_model_3labels), device="cpu"), CrossEncoder(str(tiny_model_3labels), device="cpu")


@pytest.mark.parametrize("options", [{}, {"convert_to_tensor": True}, {"convert_to_numpy": False}])
def test_empty_input_matches_sentence_transformers(both_3labels, options):
    reference, ours = both_3labels
    expected, got = reference.predict([], **options), ours.predict([], **options)
    assert type(got) is type(expected)
    if not isinstance(expected, list):
        assert (got.shape, got.dtype, str(got.device) if hasattr(got, "device") else None) == (
            expected.shape,
            expected.dtype,
            str(expected.device) if hasattr(expected, "device") else None,
        )
    else:
        assert got == expected


def test_sentence_transformers_6_argument_names(tiny_model, pairs):
    """Names sentence-transformers 6 takes (current and legacy) work the same here."""
    reference = st.CrossEncoder(str(tiny_model), device="cpu", processor_kwargs={"model_max_length": 8})
    ours = CrossEncoder(str(tiny_model), device="cpu", processor_kwargs={"model_max_length": 8})
    legacy = CrossEncoder(str(tiny_model), device="cpu", tokenizer_args={"model_max_length": 8}, cache_dir=None)
    assert ours.max_seq_length == legacy.max_seq_length == reference.max_seq_length == 8
    expected = reference.predict(inputs=pairs[:6], batch_size=4)
    np.testing.assert_allclose(ours.predict(inputs=pairs[:6], batch_size=4), expected, atol=1e-5)
    np.testing.assert_allclose(legacy.predict(sentences=pairs[:6], num_workers=2), expected, atol=1e-5)
    documents = [document for _, document in pairs[:6]]
    got = ours.rank("q", documents, apply_softmax=True, convert_to_tensor=True, activation_fct=None)
    assert [e["corpus_id"] for e in got] == [e["corpus_id"] for e in reference.rank("q", documents)]
    with pytest.raises(TypeError, match="batch_size by keyword"):
        ours.predict(pairs[:2], 8)  # sentence-transformers 6 reads a second positional argument as prompt_name


def test_prompts_match_sentence_transformers(tiny_model, pairs):
    prompts = {"query": "query: ", "other": "search for: "}
    reference = st.CrossEncoder(str(tiny_model), device="cpu", prompts=prompts, default_prompt_name="query")
    ours = CrossEncoder(str(tiny_model), device="cpu", prompts=prompts, default_prompt_name="query")
    for options in ({}, {"prompt_name": "other"}, {"prompt": "literal: "}):
        np.testing.assert_allclose(
            ours.predict(pairs[:6], **options), reference.predict(pairs[:6], **options), atol=1e-5
        )
    plain = CrossEncoder(str(tiny_model), device="cpu").predict(pairs[:6])
    assert np.abs(ours.predict(pairs[:6]) - plain).max() > 1e-4, "the default prompt changed nothing"
    with pytest.raises(ValueError, match="not one of the prompts"):
        ours.predict(pairs[:2], prompt_name="missing")
    with pytest.raises(ValueError, match="default_prompt_name"):
        CrossEncoder(str(tiny_model), device="cpu", prompts=prompts, default_prompt_name="missing")


def test_settings_saved_by_sentence_transformers(tiny_model, pairs, tmp_path):
    """Activation, prompts and max_seq_length in a folder sentence-transformers saved, read its way."""
    reference = st.CrossEncoder(
        str(tiny_model), device="cpu", activation_fn=__import__("torch").nn.Tanh(),
        prompts={"query": "query: "}, default_prompt_name="query",
    )
    folder = tmp_path / "st-saved"
    reference.save_pretrained(str(folder))
    # A conflicting config.json block: sentence-transformers' own config file wins in its folders.
    config = json.loads((folder / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": "torch.nn.modules.linear.Identity"}
    (folder / "config.json").write_text(json.dumps(config))
    module_config = next(folder.rglob("sentence_bert_config.json"), None) or folder / "sentence_bert_config.json"
    saved = json.loads(module_config.read_text()) if module_config.exists() else {}
    module_config.write_text(json.dumps({**saved, "max_seq_length": 9}))

    expected_model = st.CrossEncoder(str(folder), device="cpu")
    ours = CrossEncoder(str(folder), device="cpu")
    assert type(ours.activation_fn) is type(expected_model.activation_fn)
    assert ours.max_seq_length == expected_model.max_seq_length == 9
    assert ours.prompts.get("query") == expected_model.prompts.get("query") == "query: "
    np.testing.assert_allclose(ours.predict(pairs[:6]), expected_model.predict(pairs[:6]), atol=1e-5)


def test_config_json_activation_without_st_folder(tiny_model, tmp_path):
    """Outside a sentence-transformers folder its config file is ignored; an explicit null block means default."""
    import shutil

    folder = tmp_path / "plain"
    shutil.copytree(tiny_model, folder)
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"activation_fn": "torch.nn.Tanh"}))
    config = json.loads((folder / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": None}
    config["sbert_ce_default_activation_function"] = "torch.nn.modules.activation.Tanh"
    (folder / "config.json").write_text(json.dumps(config))
    expected = st.CrossEncoder(str(folder), device="cpu")
    ours = CrossEncoder(str(folder), device="cpu")
    assert type(ours.activation_fn) is type(expected.activation_fn)


def test_model_attribute(tiny_model):
    ours = CrossEncoder(str(tiny_model), device="cpu")
    reference = st.CrossEncoder(str(tiny_model), device="cpu")
    assert type(ours.model) is type(reference.model)


def test_bad_text_type_is_caught_as_sentence_transformers_raises_it(tiny_model):
    reference = st.CrossEncoder(str(tiny_model), device="cpu")
    ours = CrossEncoder(str(tiny_model), device="cpu")
    with pytest.raises(ValueError):
        reference.predict([("query", 3)])
    with pytest.raises(ValueError, match=r"pairs\[0\]\[1\] is int"):
        ours.predict([("query", 3)])
    with pytest.raises(TypeError):  # and still a TypeError, as before
        ours.predict([("query", None)])


def test_setting_max_seq_length_truncates_like_sentence_transformers(tiny_model, pairs):
    long_pairs = [(query, document * 8) for query, document in pairs[:4]]
    reference = st.CrossEncoder(str(tiny_model), device="cpu")
    ours = CrossEncoder(str(tiny_model), device="cpu")
    before = ours.predict(long_pairs)
    reference.max_seq_length = ours.max_seq_length = 8
    assert ours.max_length == 8
    np.testing.assert_allclose(ours.predict(long_pairs), reference.predict(long_pairs), atol=1e-5)
    assert np.abs(ours.predict(long_pairs) - before).max() > 1e-4, "the new length changed nothing"
    with pytest.raises(ValueError, match="loaded for"):
        ours.max_length = 10_000


def test_saved_by_crossenc_reloads_alike_in_both_libraries(tiny_model, pairs, tmp_path):
    import torch

    ours = CrossEncoder(str(tiny_model), device="cpu", max_length=20, activation_fn=torch.nn.Tanh(),
                        prompts={"q": "query: "}, default_prompt_name="q")
    folder = ours.save_pretrained(tmp_path / "saved")
    for loaded in (st.CrossEncoder(str(folder), device="cpu"), CrossEncoder(str(folder), device="cpu")):
        assert isinstance(loaded.activation_fn, torch.nn.Tanh)
        assert (loaded.max_seq_length, loaded.prompts.get("q"), loaded.default_prompt_name) == (20, "query: ", "q")
        np.testing.assert_allclose(loaded.predict(pairs[:5]), ours.predict(pairs[:5]), atol=1e-5)


def test_modules_json_without_a_cross_encoder_config_is_read_as_plain(tiny_model, tmp_path, pairs):
    """sentence-transformers converts such a folder from its Hugging Face files; so does crossenc."""
    import torch

    folder = CrossEncoder(str(tiny_model), device="cpu", activation_fn=torch.nn.Tanh(),
                          prompts={"q": "query: "}, default_prompt_name="q").save_pretrained(tmp_path / "m")
    settings = json.loads((folder / "config_sentence_transformers.json").read_text())
    settings.pop("model_type")
    (folder / "config_sentence_transformers.json").write_text(json.dumps(settings))
    config = json.loads((folder / "config.json").read_text())
    config.pop("sentence_transformers")
    (folder / "config.json").write_text(json.dumps(config))
    reference, ours = st.CrossEncoder(str(folder), device="cpu"), CrossEncoder(str(folder), device="cpu")
    assert type(ours.activation_fn) is type(reference.activation_fn) is torch.nn.Sigmoid
    assert ours.default_prompt_name is None and not ours.prompts
    np.testing.assert_allclose(ours.predict(pairs[:4]), reference.predict(pairs[:4]), atol=1e-5)


def test_devices_written_as_sentence_transformers_accepts_them(tiny_model, pairs):
    ours = CrossEncoder(str(tiny_model), device="cpu:0")
    assert ours.device == torch.device("cpu")
    np.testing.assert_allclose(ours.predict(pairs[:2], device="cpu:0"), ours.predict(pairs[:2]), atol=0)


def test_tokenize_pairs_is_what_predict_scores(tiny_model, pairs):
    ours = CrossEncoder(str(tiny_model), device="cpu", prompts={"q": "query: "}, default_prompt_name="q")
    plain = CrossEncoder(str(tiny_model), device="cpu")
    prompted = plain.tokenize_pairs([("query: " + query, document) for query, document in pairs[:4]])
    assert np.array_equal(ours.tokenize_pairs(pairs[:4]).ids, prompted.ids)
    with pytest.raises(ValueError, match="batch_size by keyword"):  # a ValueError, as sentence-transformers raises
        ours.rank("q", ["a", "b"], 2, False, 16)
