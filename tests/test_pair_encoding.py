"""Split pair encoding (each distinct text once, pairs assembled in numpy) equals Hugging Face's pair call."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from crossenc.batching import collate, encode_pairs
from crossenc.pair_encoding import PairEncoder, concatenated_ranges, learn_layout, longest_first_lengths
from tests.conftest import WORDS, random_pairs

CORPUS = [" ".join(random.Random(seed).choices(WORDS, k=30)) for seed in range(200)]


def hf_pairs(tokenizer, pairs, max_length):
    """Token ids and type ids exactly as the Hugging Face pair call makes them."""
    encoded = tokenizer(
        [pair[0] for pair in pairs], [pair[1] for pair in pairs], truncation="longest_first", max_length=max_length,
        return_token_type_ids=True,
    )
    return encoded["input_ids"], encoded["token_type_ids"]


def assert_matches_hf(tokenizer, pairs, max_length, use_type_ids=True, mode="split"):
    encoder = PairEncoder(tokenizer, max_length)
    assert encoder.mode == mode
    encoded = encoder.encode(pairs, use_type_ids)
    ids, type_ids = hf_pairs(tokenizer, pairs, max_length)
    assert len(encoded) == len(ids)
    for index, (begin, end) in enumerate(zip(encoded.offsets[:-1], encoded.offsets[1:])):
        assert encoded.ids[begin:end].tolist() == ids[index], pairs[index]
        if use_type_ids:
            assert encoded.type_ids[begin:end].tolist() == type_ids[index], pairs[index]


def roberta_like() -> PreTrainedTokenizerFast:
    """Byte-level BPE with RobertaProcessing: ``<s> A </s></s> B </s>``, trained here on a tiny corpus."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        pad_token="<pad>", unk_token="<unk>", model_input_names=["input_ids", "attention_mask"],
    )


def xlmr_like() -> PreTrainedTokenizerFast:
    """Unigram + Metaspace with a template ``<s> $A </s> </s> $B </s>``, trained here."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokenizer.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=120, special_tokens=specials, unk_token="<unk>"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        pad_token="<pad>", unk_token="<unk>", model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def edge_pairs() -> list[tuple[str, str]]:
    long_text = " ".join(WORDS * 3)
    return [
        ("", ""),
        ("query", ""),
        ("", "document only"),
        (long_text, "short"),
        ("short", long_text),
        (long_text, long_text),
        (long_text, long_text + " extra words"),
        ("repeated query", "doc one"),
        ("repeated query", "doc one"),
        ("repeated query", "doc two"),
        ("Ünïcödé Çafé", "naïve résumé 東京 [SEP] [CLS] text"),
    ]


@pytest.mark.parametrize("max_length", [7, 16, 17, 128])
def test_bert_split_equals_hf(bert_tokenizer, max_length):
    assert_matches_hf(bert_tokenizer, edge_pairs() + random_pairs(80, seed=max_length), max_length)


def test_bert_left_truncation_equals_hf(bert_tokenizer):
    bert_tokenizer = AutoTokenizer.from_pretrained(bert_tokenizer.name_or_path, truncation_side="left")
    assert_matches_hf(bert_tokenizer, edge_pairs() + random_pairs(40), 16)


@pytest.mark.parametrize("make", [roberta_like, xlmr_like], ids=["roberta", "xlm-r"])
@pytest.mark.parametrize("max_length", [9, 24, 512])
def test_roberta_family_split_equals_hf(make, max_length):
    assert_matches_hf(make(), edge_pairs() + random_pairs(60, seed=3), max_length)


@pytest.mark.parametrize("max_length", [1, 2])
def test_max_length_under_the_special_tokens_left_to_the_library(bert_tokenizer, max_length):
    # The library then truncates nothing at all; split mode steps aside rather than imitate that.
    assert_matches_hf(bert_tokenizer, edge_pairs(), max_length, mode="joint")


def test_other_post_processors_and_a_template_with_b_first():
    tokenizer = roberta_like()
    backend = tokenizer.backend_tokenizer
    for processor in (
        processors.ByteLevel(),
        processors.Sequence([processors.ByteLevel(), processors.RobertaProcessing(("</s>", 2), ("<s>", 0))]),
    ):
        backend.post_processor = processor
        assert_matches_hf(tokenizer, edge_pairs() + random_pairs(20), 24)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $B:1 </s> $A:0 </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    assert_matches_hf(tokenizer, edge_pairs() + random_pairs(20), 24, mode="joint")


def test_raw_tokenizer_with_padding_is_not_padded(bert_tokenizer):
    backend = PairEncoder(bert_tokenizer, 20).pairs_backend
    backend.enable_padding(length=20)
    encoder = PairEncoder(backend, 0)
    assert backend.padding is not None  # the caller's tokenizer is left alone
    pairs = random_pairs(10, seed=4)
    ids, _ = hf_pairs(bert_tokenizer, pairs, 20)
    encoded = encoder.encode(pairs, True)
    assert [encoded.ids[a:b].tolist() for a, b in zip(encoded.offsets[:-1], encoded.offsets[1:])] == ids


def test_real_minilm_tokenizer_on_debian_pairs():
    from crossenc.workloads import load_debian
    from crossenc.demo import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    pairs = load_debian().subset(300, 3).pairs()
    assert_matches_hf(tokenizer, pairs, 512)
    assert_matches_hf(tokenizer, pairs[:50], 64)  # most pairs truncated


def test_layouts_read_from_post_processors(bert_tokenizer):
    bert = learn_layout(PairEncoder(bert_tokenizer, 32).single)
    cls, sep = bert_tokenizer.cls_token_id, bert_tokenizer.sep_token_id
    assert (bert.prefix, bert.middle, bert.suffix) == ((cls,), (sep,), (sep,))
    assert (bert.first_type, bert.second_type, bert.suffix_types) == (0, 1, (1,))
    xlmr = learn_layout(PairEncoder(xlmr_like(), 32).single)
    assert (xlmr.prefix, xlmr.middle, xlmr.suffix) == ((0,), (2, 2), (2,))


def test_unsupported_truncation_falls_back_to_joint(bert_tokenizer):
    backend = PairEncoder(bert_tokenizer, 16).pairs_backend
    backend.enable_truncation(16, strategy="only_second")
    encoder = PairEncoder(backend, 16)
    assert encoder.mode == "joint"
    pairs = [("a query", " ".join(WORDS))]
    encoded = encoder.encode(pairs, True)
    reference = backend.encode_batch(pairs)[0]
    assert encoded.ids.tolist() == reference.ids and encoded.type_ids.tolist() == reference.type_ids


def test_no_truncation_backend(bert_tokenizer):
    backend = PairEncoder(bert_tokenizer, 16).pairs_backend
    backend.no_truncation()
    encoder = PairEncoder(backend, 16)
    assert encoder.mode == "split" and encoder.max_length is None
    pairs = [("a query", " ".join(WORDS))]
    assert encoder.encode(pairs, True).ids.tolist() == backend.encode_batch(pairs)[0].ids


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(0, 40), second=st.integers(0, 40), max_length=st.integers(3, 40)  # >= the 3 specials
)
def test_longest_first_lengths_match_the_library(bert_tokenizer, first, second, max_length):
    # One word of WORDS is one token in the tiny vocabulary, so text lengths are exact.
    query, document = " ".join(["data"] * first), " ".join(["file"] * second)
    reference = bert_tokenizer([query], [document], truncation="longest_first", max_length=max_length)["token_type_ids"][0]
    kept_first = reference.count(0) - 2  # [CLS] A [SEP] are type 0
    kept_second = reference.count(1) - 1  # B [SEP] are type 1
    got = longest_first_lengths(np.array([first]), np.array([second]), max_length - 3)
    assert (int(got[0][0]), int(got[1][0])) == (kept_first, kept_second)


def test_duplicate_texts_are_tokenized_once(bert_tokenizer):
    encoder = PairEncoder(bert_tokenizer, 64)
    seen: list[list[str]] = []
    real = encoder.texts.encode

    def spy(texts):
        seen.append(list(texts))
        return real(texts)

    encoder.texts.encode = spy
    pairs = [("q", f"doc {index % 3}") for index in range(9)]
    encoded = encoder.encode(pairs, True)
    assert seen == [["q", "doc 0", "doc 1", "doc 2"]]
    assert len(encoded) == 9


def testranges_with_empty_pieces():
    starts = np.array([5, 0, 9, 2, 7])
    lengths = np.array([2, 0, 3, 0, 1])
    assert concatenated_ranges(starts, lengths).tolist() == [5, 6, 9, 10, 11, 7]
    assert concatenated_ranges(np.array([3]), np.array([0])).tolist() == []


def test_collate_pads_and_keeps_order(bert_tokenizer):
    encoded = encode_pairs(bert_tokenizer, random_pairs(10, seed=1), 32, True)
    indices = np.array([4, 0, 7])
    batch = collate(encoded, indices, pad_token_id=99, bucket_lengths=[8, 64])
    assert batch.input_ids.shape == (3, 64 if encoded.lengths[indices].max() > 8 else 8)
    for row, index in enumerate(indices):
        begin, end = encoded.offsets[index], encoded.offsets[index + 1]
        length = end - begin
        assert batch.input_ids[row, :length].tolist() == encoded.ids[begin:end].tolist()
        assert batch.token_type_ids[row, :length].tolist() == encoded.type_ids[begin:end].tolist()
        assert (batch.input_ids[row, length:] == 99).all() and (batch.token_type_ids[row, length:] == 0).all()
        assert batch.attention_mask[row].tolist() == [1] * length + [0] * (batch.padded_length - length)


@pytest.mark.parametrize("style, pad", [("absolute", 0), ("padding_offset", 1)])
def test_packed_batches_equal_padded_then_unpacked(bert_tokenizer, style, pad):
    from crossenc.batching import collate_packed
    from crossenc.kernels.packing import pack_batch

    pairs = random_pairs(30, seed=5) + [("[PAD] inside", "text [PAD] [PAD] with pad tokens")]
    encoded = encode_pairs(bert_tokenizer, pairs, 40, True)
    encoded = type(encoded)(ids=np.where(encoded.ids == 0, pad, encoded.ids), type_ids=encoded.type_ids,
                            offsets=encoded.offsets)  # the pad id of the position style appears inside texts
    indices = np.array([30, 3, 17, 0, 29])
    direct = pack_batch(collate_packed(encoded, indices), style, pad)
    via_padding = pack_batch(collate(encoded, indices, pad), style, pad)
    for field in ("input_ids", "token_type_ids", "position_ids", "cu_seqlens", "lengths"):
        assert np.array_equal(getattr(direct, field), getattr(via_padding, field)), field
    assert (direct.position_ids != np.arange(len(direct.position_ids))).any()


def test_packed_backend_gets_packed_batches_and_no_padding_counted(tiny_model, pairs):
    from crossenc import CrossEncoder

    packed = CrossEncoder(str(tiny_model), variant="packed")
    padded = CrossEncoder(str(tiny_model), variant="sdpa")
    np.testing.assert_allclose(packed.predict(pairs), padded.predict(pairs), atol=1e-6)
    assert packed.last_padding.efficiency == 1.0 and padded.last_padding.efficiency < 1.0


def test_distinct_texts_are_encoded_once_per_call_in_slices(bert_tokenizer, monkeypatch):
    """Across what used to be chunk boundaries a text is still encoded once; slices keep ids exact."""
    import crossenc.fast_tokenization as fast_tokenization

    monkeypatch.setattr(fast_tokenization, "ENCODE_CHUNK", 3)
    encoder = PairEncoder(bert_tokenizer, 12, fast=False)  # the tokenizers path is the one that slices
    seen: list[str] = []
    real = encoder.texts._encode

    def spy(texts, **kwargs):
        assert len(texts) <= 3
        seen.extend(texts)
        return real(texts, **kwargs)

    encoder.texts._encode = spy
    pairs = [(f"query {index % 2}", f"document number {index % 5} " * (index % 4)) for index in range(20)]
    encoded = encoder.encode(pairs, True)
    assert sorted(seen) == sorted({text for pair in pairs for text in pair})  # each distinct text once
    expected = hf_pairs(bert_tokenizer, pairs, 12)
    assert [encoded.ids[a:b].tolist() for a, b in zip(encoded.offsets[:-1], encoded.offsets[1:])] == expected[0]
