"""sentence-transformers' own CrossEncoder tests (tests/cross_encoder/test_model.py, v6), ported to
tiny local checkpoints and run on crossenc and on sentence-transformers alike where both apply.

Each test keeps the reference test's name; Hub ids are replaced by ``tiny_model`` (one label) and
``tiny_model_3labels``. Tests the port leaves out are listed in README "Deliberate differences".
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder

st = pytest.importorskip("sentence_transformers")
LIBRARIES = {"crossenc": CrossEncoder, "sentence-transformers": st.CrossEncoder}


@pytest.fixture(scope="module", params=sorted(LIBRARIES))
def library(request):
    return LIBRARIES[request.param]


@pytest.fixture(scope="module")
def _reranker(tiny_model, library):
    return library(str(tiny_model), device="cpu")


@pytest.fixture()
def reranker(_reranker):
    return copy.deepcopy(_reranker)  # as the reference's fixtures: a test may change its model


@pytest.fixture(scope="module")
def nli(tiny_model_3labels, library):
    return library(str(tiny_model_3labels), device="cpu")


def fullname(activation) -> str:
    return st.util.fullname(activation)


def test_classifier_dropout_is_set(tiny_model, library, caplog):
    with caplog.at_level(logging.WARNING):
        model = library(str(tiny_model), device="cpu", classifier_dropout=0.1234)
    assert model.config.classifier_dropout == 0.1234
    assert model.model.config.classifier_dropout == 0.1234
    assert "`classifier_dropout` argument is deprecated" in caplog.text


def test_classifier_dropout_default_value(reranker):
    assert reranker.config.classifier_dropout is None
    assert reranker.model.config.classifier_dropout is None


def test_rank_scores_are_floats(reranker):
    ranks = reranker.rank("A man is eating pasta.", ["A man is eating food.", "A monkey is playing."])
    assert [type(rank["score"]) for rank in ranks] == [float, float]
    json.dumps(ranks)


@pytest.mark.parametrize("kwarg", ["convert_to_numpy", "convert_to_tensor"])
def test_rank_convert_kwargs_deprecated(reranker, kwarg, caplog):
    with caplog.at_level(logging.WARNING):
        ranks = reranker.rank("A man is eating pasta.", ["A man is eating food."], **{kwarg: True})
    assert kwarg in caplog.text
    assert type(ranks[0]["score"]) is float


def test_rank_multiple_labels(nli):
    message = ("CrossEncoder.rank() only works for models with num_labels=1. "
               "Consider using CrossEncoder.predict() with input pairs instead.")
    with pytest.raises(ValueError, match=re.escape(message)):
        nli.rank(query="A man is eating pasta.", documents=["A man is eating food.", "The girl is carrying a baby."])


def test_predict_softmax(nli):
    corpus = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    pairs = [("A man is eating pasta.", doc) for doc in corpus]
    scores = nli.predict(pairs, apply_softmax=True, convert_to_tensor=True)
    assert torch.isclose(scores.sum(1), torch.ones(len(corpus))).all()
    scores = nli.predict(pairs, apply_softmax=False, convert_to_tensor=True)
    assert not torch.isclose(scores.sum(1), torch.ones(len(corpus))).all()


def test_predict_low_precision_logits_upcast_to_float32(reranker):
    pairs = [("A man is eating pasta.", "A man is eating food."), ("A man is eating pasta.", "The girl is carrying a baby.")]
    reference = reranker.predict(pairs, convert_to_tensor=True)
    assert reference.dtype == torch.float32
    reranker.model.to(torch.bfloat16)
    scores = reranker.predict(pairs, convert_to_tensor=True)
    assert scores.dtype == torch.float32
    assert torch.allclose(scores, reference, atol=1e-2)


def test_predict_single_input(reranker, nli):
    for model in (reranker, nli):
        nested = model.predict([["A man is eating pasta.", "A man is eating food."]])
        assert isinstance(nested, np.ndarray)
        assert nested.shape == ((1,) if model.num_labels == 1 else (1, model.num_labels))
        single = model.predict(["A man is eating pasta.", "A man is eating food."])
        if model.num_labels == 1:
            assert isinstance(single, np.float32)
        else:
            assert isinstance(single, np.ndarray) and single.shape == (model.num_labels,)


def test_is_singular_input(reranker):
    assert reranker.is_singular_input(np.array(["query", "document"])) is True
    assert reranker.is_singular_input(np.array([["q1", "d1"], ["q2", "d2"]])) is False
    assert reranker.is_singular_input(np.array([], dtype=str)) is False
    assert reranker.is_singular_input(("query", "document")) is True
    assert reranker.is_singular_input([("query", "document")]) is False
    assert reranker.is_singular_input([]) is False


def test_predict_numpy_inputs(reranker):
    assert reranker.predict(np.array([], dtype=str), show_progress_bar=False).shape == (0,)
    pair = np.array(["what is AI?", "AI is artificial intelligence."])
    score = reranker.predict(pair, show_progress_bar=False)
    assert isinstance(score, np.float32)
    assert np.allclose(score, reranker.predict(tuple(pair.tolist())))
    pairs = np.array([["what is AI?", "AI is artificial intelligence."], ["what is ML?", "ML is machine learning."]])
    assert np.allclose(reranker.predict(pairs), reranker.predict(pairs.tolist()))


@pytest.mark.parametrize("convert_to_numpy", [True, False])
@pytest.mark.parametrize("convert_to_tensor", [True, False])
def test_empty_predict(reranker, convert_to_numpy, convert_to_tensor):
    result = reranker.predict([], convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor)
    if convert_to_tensor:
        assert isinstance(result, torch.Tensor) and result.numel() == 0 and result.device == reranker.model.device
    elif convert_to_numpy:
        assert isinstance(result, np.ndarray) and result.size == 0
    else:
        assert result == []


@pytest.mark.parametrize("convert_to_tensor", [True, False])
@pytest.mark.parametrize("convert_to_numpy", [True, False])
def test_predict_output_types(reranker, convert_to_tensor, convert_to_numpy):
    out = reranker.predict([["One sentence", "Another sentence"]], convert_to_tensor=convert_to_tensor,
                           convert_to_numpy=convert_to_numpy)
    expected_type = torch.Tensor if convert_to_tensor else np.ndarray if convert_to_numpy else list
    assert isinstance(out, expected_type)
    assert out[0].dtype == (np.float32 if expected_type is np.ndarray else torch.float32)


@pytest.mark.parametrize("safe_serialization", [True, False, None])
def test_safe_serialization(reranker, safe_serialization, tmp_path):
    # transformers 5 writes safetensors only: False is quietly ignored, as the reference's test expects there
    kwargs = {} if safe_serialization is None else {"safe_serialization": safe_serialization}
    reranker.save_pretrained(str(tmp_path), **kwargs)
    assert len(list(tmp_path.glob("**/model.safetensors"))) == 1
    assert not list(tmp_path.glob("**/pytorch_model.bin"))


def test_bfloat16(tiny_model, library):
    model = library(str(tiny_model), device="cpu", automodel_args={"torch_dtype": torch.bfloat16})
    assert isinstance(model.predict([["Hello there!", "Hello, World!"]]), np.ndarray)
    assert isinstance(model.rank("Hello there!", ["Hello, World!", "Heya!"]), list)


def test_device_assignment(reranker):
    assert isinstance(reranker.device, torch.device) and reranker.device.type == "cpu"
    assert reranker.to("cpu") is reranker and reranker.model.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="moving devices needs a CUDA GPU")
def test_device_switching(tiny_model, library, pairs):
    model = library(str(tiny_model), device="cpu")
    before = model.predict(pairs)
    model.to("cuda")
    assert model.device.type == "cuda" and model.model.device.type == "cuda"
    np.testing.assert_allclose(model.predict(pairs), before, atol=1e-4)


def test_num_labels_fresh_model(reranker, nli):
    assert (reranker.num_labels, nli.num_labels) == (1, 3)


@pytest.mark.parametrize("legacy, current", [("automodel_args", "model_kwargs"), ("tokenizer_args", "processor_kwargs"),
                                             ("config_args", "config_kwargs")])
def test_logger_warning(tiny_model, caplog, legacy, current):
    # The reference's wording; crossenc warns every time (the reference once per process, so its
    # second caller, or a second test, never sees it)
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            CrossEncoder(str(tiny_model), device="cpu", **{legacy: {}})
        assert f"`{legacy}` argument was renamed and is now deprecated. Please use `{current}`" in caplog.text


@pytest.mark.parametrize("kwargs", [{"sentences": [["Hello there!", "Hello, World!"]]},
                                    {"inputs": [["Hello there!", "Hello, World!"]], "num_workers": 2},
                                    {"inputs": [["Hello there!", "Hello, World!"]], "activation_fct": torch.nn.Identity()}])
def test_predict_rank_args_decorator(reranker, caplog, kwargs):
    with caplog.at_level(logging.WARNING):
        scores = reranker.predict(**kwargs)
    assert caplog.text != "" and scores.shape == (1,)


@pytest.mark.parametrize(
    "num_labels, activation_fn, saved_activation_fn",
    [(1, torch.nn.Sigmoid(), "torch.nn.modules.activation.Sigmoid"),
     (1, torch.nn.Identity(), "torch.nn.modules.linear.Identity"),
     (1, torch.nn.Tanh(), "torch.nn.modules.activation.Tanh"),
     (1, None, "torch.nn.modules.activation.Sigmoid"),
     (3, None, "torch.nn.modules.linear.Identity")],
)
def test_load_activation_fn_from_kwargs(tiny_model, tiny_model_3labels, library, tmp_path, num_labels, activation_fn,
                                        saved_activation_fn):
    folder = tiny_model if num_labels == 1 else tiny_model_3labels
    model = library(str(folder), device="cpu", activation_fn=activation_fn)
    assert fullname(model.activation_fn) == saved_activation_fn
    model.save_pretrained(str(tmp_path))
    assert json.loads((tmp_path / "config_sentence_transformers.json").read_text())["activation_fn"] == saved_activation_fn
    loaded = library(str(tmp_path), device="cpu")
    assert fullname(loaded.activation_fn) == saved_activation_fn
    loaded.predict([["Hello there!", "Hello, World!"]], activation_fn=torch.nn.Identity())
    assert fullname(loaded.activation_fn) == saved_activation_fn
    assert fullname(library(str(tmp_path), activation_fn=torch.nn.Identity()).activation_fn) == (
        "torch.nn.modules.linear.Identity")


def test_load_activation_fn_from_config_custom(reranker, library, tmp_path, caplog):
    reranker.save_pretrained(str(tmp_path))
    config_file = tmp_path / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text())
    config["activation_fn"] = "sentence_transformers.custom.activations.CustomActivation"
    config_file.write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        library(str(tmp_path), device="cpu")
    assert ("Activation function path 'sentence_transformers.custom.activations.CustomActivation' is not trusted, "
            "using default activation function instead.") in caplog.text
    with pytest.raises(ModuleNotFoundError):
        library(str(tmp_path), device="cpu", trust_remote_code=True)


def test_default_activation_fn(reranker):
    assert fullname(reranker.activation_fn) == "torch.nn.modules.activation.Sigmoid"
    with pytest.warns(DeprecationWarning, match="The `default_activation_function` property was renamed"):
        assert fullname(reranker.default_activation_function) == "torch.nn.modules.activation.Sigmoid"


def test_max_length_setter(reranker):
    reranker.max_seq_length = 16
    assert reranker.max_seq_length == 16 and reranker.tokenizer.model_max_length == 16


def test_model_type_backend_and_file_path(reranker, tiny_model, library):
    assert reranker.model_type == "CrossEncoder" and reranker.get_backend() == "torch"
    with pytest.raises(NotADirectoryError):
        library(str(Path(tiny_model) / "config.json"))


def test_preprocess_and_forward_give_the_logits_predict_uses(reranker, pairs):
    features = reranker.preprocess(pairs[:6])
    assert {"input_ids", "attention_mask"} <= set(features)
    scores = reranker(features)["scores"]
    np.testing.assert_allclose(torch.sigmoid(scores).squeeze(-1).detach().numpy(),
                               reranker.predict(pairs[:6]), atol=1e-5)


def test_parameters_are_the_models(reranker):
    parameters = list(reranker.parameters())
    assert parameters and all(isinstance(p, torch.nn.Parameter) for p in parameters)
    assert sum(p.numel() for p in parameters) == sum(p.numel() for p in reranker.model.parameters())


# tests/cross_encoder/test_backends.py: the backend options sentence-transformers takes in model_kwargs


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_backend_export(tiny_model, pairs, backend):
    model = CrossEncoder(str(tiny_model), device="cpu", backend=backend,
                         model_kwargs={"file_name": "wrong_file_name", "export": True})
    assert model.get_backend() == backend
    reference = st.CrossEncoder(str(tiny_model), device="cpu")
    np.testing.assert_allclose(model.predict(pairs[:8]), reference.predict(pairs[:8]), atol=1e-5)
    clone = copy.deepcopy(model)  # the compiled session is shared: it holds no weights one could edit
    assert clone.predictor is model.predictor
    np.testing.assert_allclose(clone.predict(pairs[:8]), model.predict(pairs[:8]), atol=0)


def test_backend_load_wrong_file_name_without_export(tiny_model):
    with pytest.raises(ValueError, match="wrong_file_name"):
        CrossEncoder(str(tiny_model), device="cpu", backend="onnx",
                     model_kwargs={"file_name": "wrong_file_name", "export": False})


def test_onnx_provider_crash(tiny_model):
    with pytest.raises(ValueError, match="incorrect_provider"):
        CrossEncoder(str(tiny_model), device="cpu", backend="onnx", model_kwargs={"provider": "incorrect_provider"})


def test_openvino_ov_config(tiny_model, pairs, tmp_path):
    model = CrossEncoder(str(tiny_model), device="cpu", backend="openvino",
                         model_kwargs={"ov_config": {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": "2"}})
    assert model.predictor.compiled.get_property("NUM_STREAMS") == 2
    np.testing.assert_allclose(model.predict(pairs[:8]), CrossEncoder(str(tiny_model), device="cpu").predict(pairs[:8]),
                               atol=1e-5)
    config_file = tmp_path / "ov_config.json"
    config_file.write_text('{"NUM_STREAMS": "1"}')
    from_file = CrossEncoder(str(tiny_model), device="cpu", backend="openvino", model_kwargs={"ov_config": str(config_file)})
    assert from_file.predictor.compiled.get_property("NUM_STREAMS") == 1


def test_incorrect_backend(tiny_model):
    with pytest.raises(ValueError):
        CrossEncoder(str(tiny_model), backend="incorrect_backend")


# Chat templates (the reference's test_model.py): pairs render as query/document messages


GENERIC_INSTRUCT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
)
RERANKER_TEMPLATE = (
    '<Query>: {{ messages | selectattr("role", "eq", "query") | map(attribute="content") | first }}\n'
    '<Document>: {{ messages | selectattr("role", "eq", "document") | map(attribute="content") | first }}'
)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
)
STRUCTURED_RERANKER_TEMPLATE = (
    '<Query>: {{ (messages | selectattr("role", "eq", "query") | first).content[0].text }}\n'
    '<Document>: {{ (messages | selectattr("role", "eq", "document") | first).content[0].text }}'
)
PAIR_ROLES_DROPPED = "cannot carry a 'query'/'document' pair"


def test_predict_raises_on_chat_template_without_pair_roles(tiny_model, pairs):
    ours = CrossEncoder(str(tiny_model), device="cpu", processor_kwargs={"chat_template": GENERIC_INSTRUCT_TEMPLATE})
    with pytest.raises(ValueError, match=PAIR_ROLES_DROPPED):
        ours.predict(pairs[:2])
    reference = st.CrossEncoder(str(tiny_model), device="cpu", processor_kwargs={"chat_template": RERANKER_TEMPLATE})
    ours.processor.chat_template = RERANKER_TEMPLATE  # the remedy the message names takes effect
    assert torch.equal(ours.preprocess(pairs[:3])["input_ids"], reference[0].preprocess(pairs[:3])["input_ids"])


@pytest.mark.parametrize("template", [RERANKER_TEMPLATE, CHATML_TEMPLATE, STRUCTURED_RERANKER_TEMPLATE])
@pytest.mark.parametrize("options", [{}, {"max_length": 24}, {"prompts": {"p": "judge relevance"}, "default_prompt_name": "p"}])
def test_chat_template_ids_and_scores_match_sentence_transformers(tiny_model, pairs, template, options):
    """Same ids as the reference's preprocess (prompt as a system message; the template's tail written
    back over truncated rows) and the same scores; without the template the scores differ."""
    kwargs = {"device": "cpu", "processor_kwargs": {"chat_template": template}, **options}
    ours, reference = CrossEncoder(str(tiny_model), **kwargs), st.CrossEncoder(str(tiny_model), **kwargs)
    prompt = options.get("prompts", {}).get("p")
    expected = reference[0].preprocess(pairs[:12], prompt=prompt)["input_ids"]
    got = ours.preprocess(pairs[:12])["input_ids"]
    assert got.shape == expected.shape and torch.equal(got, expected)
    np.testing.assert_allclose(ours.predict(pairs[:12]), reference.predict(pairs[:12]), atol=1e-5, rtol=0)
    assert ours.info()["tokenization"] == "chat"
    plain = CrossEncoder(str(tiny_model), device="cpu", max_length=options.get("max_length"))
    assert np.abs(plain.predict(pairs[:12]) - ours.predict(pairs[:12])).max() > 1e-4
    encoded = ours.tokenize_pairs(pairs[:12])  # the picklable path renders the same conversations
    np.testing.assert_allclose(ours.predict_tokenized(encoded), ours.predict(pairs[:12]), atol=1e-6, rtol=0)
