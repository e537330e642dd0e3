"""First-token last layer: the export wrapper equals the Hugging Face model on every supported architecture."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder
from crossenc.backends.torch_backend.first_token import (
    FirstTokenLastLayer,
    first_token_model,
    last_layer_note,
    supports_first_token,
)
from crossenc.support import SAMPLE_PAIRS
from tests.families import build_family_model
from tests.kernels.test_kernels import build_hf

NEW_FAMILIES = ("electra", "distilbert", "albert", "mpnet", "deberta-v2", "modernbert")
NO_SDPA = ("mpnet", "deberta-v2")  # transformers has eager attention only for these
# SAMPLE_PAIRS has an empty query and an empty document, one-letter texts and a pair past max_length;
# two mid-length documents put padding inside ModernBERT's 16-token window and past it.
PAIRS = [*SAMPLE_PAIRS, ("rank fusion", " ".join(["search query document rank"] * 6)),
         ("sliding window", " ".join(["the kernel driver"] * 14))]


def _padded_batch(pad_id: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = [1, 2, 9, 17, 5, 30]
    ids = np.full((len(lengths), max(lengths)), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(5, 99, size=length)
        mask[row, :length] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _assert_shares_weights_and_leaves_model_whole(wrapped, model):
    layers_before = [type(module) for module in model.modules()]
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in model.parameters()}
    assert [type(module) for module in model.modules()] == layers_before
    assert not any("FirstToken" in type(module).__name__ for module in model.modules())


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_first_token_wrapper_matches_hf(model_type, attn):
    model, _, pad_id = build_hf(model_type, num_labels=3)
    model.config._attn_implementation = attn
    ids, mask = _padded_batch(pad_id)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        wrapped = first_token_model(model)
        got = wrapped(input_ids=ids, attention_mask=mask)["logits"]
    assert isinstance(wrapped, FirstTokenLastLayer) and last_layer_note(wrapped) == "first token only"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert type(wrapped.model.base_model.encoder.layer[-1]).__name__ == "BertFirstTokenLayer"
    _assert_shares_weights_and_leaves_model_whole(wrapped, model)


def test_camembert_uses_the_bert_layer():
    from transformers import CamembertConfig, CamembertForSequenceClassification

    config = CamembertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=130, pad_token_id=1, num_labels=2,
                             initializer_range=0.2)
    torch.manual_seed(0)
    model = CamembertForSequenceClassification(config).eval()
    ids, mask = _padded_batch(1)
    with torch.no_grad():
        torch.testing.assert_close(first_token_model(model)(input_ids=ids, attention_mask=mask)["logits"],
                                   model(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def family_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-token-families")
    return {family: build_family_model(root / family, family, num_labels=2) for family in (*NEW_FAMILIES, "qwen3")}


def _tokenized(folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    queries, documents = zip(*PAIRS)
    encoded = tokenizer(list(queries), list(documents), padding=True, truncation=True, max_length=128,
                        return_tensors="pt")
    lengths = encoded["attention_mask"].sum(1)
    assert int(lengths.max()) == 128 and int(lengths.min()) < 16  # a max-length pair and short ones, padded
    return {name: encoded[name] for name in tokenizer.model_input_names}


def _hf(folder, attn):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation=attn).eval()


@pytest.mark.parametrize(("family", "attn"), [(family, attn) for family in NEW_FAMILIES for attn in ("eager", "sdpa")
                                              if attn == "eager" or family not in NO_SDPA])
def test_new_families_match_hf_on_padded_pairs(family_folders, family, attn):
    model = _hf(family_folders[family], attn)
    inputs = _tokenized(family_folders[family])
    with torch.no_grad():
        expected = model(**inputs).logits
        wrapped = first_token_model(model)
        got = wrapped(**inputs)["logits"]
        single = {name: tensor[:1, : int(inputs["attention_mask"][0].sum())] for name, tensor in inputs.items()}
        unpadded = (wrapped(**single)["logits"], model(**single).logits)  # sdpa: no mask at all
    assert isinstance(wrapped, FirstTokenLastLayer) and last_layer_note(wrapped) == "first token only"
    assert float(expected.std()) > 1e-3, "constant logits would make the comparison vacuous"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(*unpadded, atol=1e-5, rtol=0)
    _assert_shares_weights_and_leaves_model_whole(wrapped, model)


def test_modernbert_sliding_window_of_the_last_layer_is_respected(family_folders):
    """The tiny ModernBERT's last layer is local (16-token window) and the pairs run past it: a first-token
    layer that ignored the window would see different keys (the HF logits below differ when it is global)."""
    folder = family_folders["modernbert"]
    model = _hf(folder, "sdpa")
    assert model.config.layer_types[-1] == "sliding_attention" and model.config.local_attention == 16
    inputs = _tokenized(folder)
    global_model = copy.deepcopy(model)
    global_model.config.layer_types = ["full_attention"] * model.config.num_hidden_layers
    for layer in global_model.model.layers:
        layer.attention_type = "full_attention"
    with torch.no_grad():
        windowed, unwindowed = model(**inputs).logits, global_model(**inputs).logits
        assert float((windowed - unwindowed).abs().max()) > 1e-3  # the window changes these scores
        for attn in ("eager", "sdpa"):
            model.config._attn_implementation = attn
            torch.testing.assert_close(first_token_model(model)(**inputs)["logits"], model(**inputs).logits,
                                       atol=1e-5, rtol=0)
        torch.testing.assert_close(first_token_model(global_model)(**inputs)["logits"], unwindowed, atol=1e-5, rtol=0)


def test_albert_shared_layers_and_inner_groups():
    """ALBERT shares layer groups across iterations: with 3 iterations over 2 groups of 2 inner layers each, only
    the last inner layer of the last iteration runs for the first token."""
    from transformers import AlbertConfig, AlbertForSequenceClassification

    config = AlbertConfig(vocab_size=99, embedding_size=8, hidden_size=16, num_hidden_layers=3, num_hidden_groups=2,
                          inner_group_num=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                          initializer_range=0.3, num_labels=2)
    torch.manual_seed(0)
    model = AlbertForSequenceClassification(config).eval()
    ids, mask = _padded_batch(0)
    with torch.no_grad():
        torch.testing.assert_close(first_token_model(model)(input_ids=ids, attention_mask=mask)["logits"],
                                   model(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("share_att_key", [False, True])
@pytest.mark.parametrize("pos_att_type", [["p2c", "c2p"], ["c2p"], ["p2c"]])
def test_deberta_v2_relative_attention_variants(share_att_key, pos_att_type):
    """DeBERTa-v3 shares the attention key with the position projections and normalizes the relative
    embeddings; v2 has its own projections. Either way row 0 of c2p and p2c must be HF's."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    config = DebertaV2Config(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=64, type_vocab_size=0,
                             relative_attention=True, position_buckets=8, max_relative_positions=32,
                             pos_att_type=pos_att_type, share_att_key=share_att_key, norm_rel_ebd="layer_norm",
                             position_biased_input=False, initializer_range=0.3, num_labels=2)
    torch.manual_seed(0)
    model = DebertaV2ForSequenceClassification(config).eval()
    ids, mask = _padded_batch(0)
    with torch.no_grad():
        torch.testing.assert_close(first_token_model(model)(input_ids=ids, attention_mask=mask)["logits"],
                                   model(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_sdpa_variant_runs_the_first_token_and_matches_eager(family_folders, family):
    folder = str(family_folders[family])
    sdpa = CrossEncoder(folder, backend="torch", variant="sdpa", device="cpu")
    eager = CrossEncoder(folder, backend="torch", variant="eager", device="cpu")
    assert sdpa.info()["details"]["last_layer"] == "first token only"
    assert eager.info()["details"]["last_layer"] == "all tokens"  # the plain HF reference
    np.testing.assert_allclose(sdpa.predict_logits(PAIRS), eager.predict_logits(PAIRS), atol=1e-5, rtol=0)


def test_mean_pooling_modernbert_stays_on_all_tokens(family_folders, tmp_path):
    folder = tmp_path / "modernbert-mean"
    shutil.copytree(family_folders["modernbert"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "classifier_pooling": "mean"}))
    model = _hf(folder, "sdpa")
    assert first_token_model(model) is model and not supports_first_token(model)
    assert last_layer_note(model) == "all tokens (mean pooling reads every token)"
    encoder = CrossEncoder(str(folder), backend="torch", variant="sdpa", device="cpu")
    assert encoder.info()["details"]["last_layer"] == "all tokens (mean pooling reads every token)"


def test_unsupported_models_pass_through_with_the_reason(family_folders):
    decoder = _hf(family_folders["qwen3"], "sdpa")
    assert first_token_model(decoder) is decoder
    assert last_layer_note(decoder) == "all tokens (qwen3: a decoder pools the last real token, not the first)"
    with pytest.raises(ValueError, match="first-token export supports .*decoder pools the last real token"):
        FirstTokenLastLayer(decoder)
    flex = _hf(family_folders["electra"], "eager")
    flex.config._attn_implementation = "flex_attention"
    assert last_layer_note(flex) == (
        "all tokens (flex_attention attention: the first-token layer reads eager or sdpa masks)")
    from transformers import ElectraForMaskedLM

    masked_lm = ElectraForMaskedLM(flex.config)  # the MLM head reads every token
    assert last_layer_note(masked_lm) == "all tokens (ElectraForMaskedLM is not a sequence classifier)"
