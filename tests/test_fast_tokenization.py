"""The compiled text encoder (nanotoken) gives Hugging Face's ids, or is not used: per tokenizer and per text."""

from __future__ import annotations

import copy
import json
import pickle
import random
import sys

import numpy as np
import pytest
from transformers import AutoTokenizer

import crossenc.fast_tokenization as fast_tokenization
from crossenc.fast_tokenization import EDGE_PROBES, FastTextEncoder, HubTextEncoder, text_encoder
from crossenc.pair_encoding import PairEncoder
from tests.test_pair_encoding import hf_pairs, roberta_like

pytest.importorskip("nanotoken")  # the `fast` extra (in `test`): without it every text goes through tokenizers


@pytest.fixture(scope="module")
def minilm():
    from crossenc.demo import minilm_dir

    return AutoTokenizer.from_pretrained(minilm_dir())


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    monkeypatch.setattr(fast_tokenization, "_CHECKED", {})  # each test sees its own engine and verdict
    monkeypatch.delenv("CROSSENC_FAST_TOKENIZER", raising=False)


def texts_of(encoder: PairEncoder, texts: list[str]) -> list[list[int]]:
    ids, lengths = encoder.texts.encode(texts)
    ends = np.cumsum(lengths)
    return [ids[end - length : end].tolist() for end, length in zip(ends, lengths)]


def hf_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    backend = copy.deepcopy(tokenizer.backend_tokenizer)  # a pair call leaves its truncation set on the original
    backend.no_truncation()
    backend.no_padding()
    return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]


def assert_pairs_match(tokenizer, encoder: PairEncoder, pairs, max_length: int) -> None:
    encoded = encoder.encode(pairs, True)
    ids, type_ids = hf_pairs(tokenizer, pairs, max_length)
    got = [encoded.ids[a:b].tolist() for a, b in zip(encoded.offsets[:-1], encoded.offsets[1:])]
    got_types = [encoded.type_ids[a:b].tolist() for a, b in zip(encoded.offsets[:-1], encoded.offsets[1:])]
    wrong = [index for index in range(len(pairs)) if got[index] != ids[index] or got_types[index] != type_ids[index]]
    assert not wrong, [pairs[index] for index in wrong[:3]]


def fuzz_texts(count: int, seed: int = 0) -> list[str]:
    """Random texts mixing ASCII, chosen scripts, any code point and special-token strings."""
    rng = random.Random(seed)
    common = " \t\n\r.,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    blocks = [(0x80, 0x250), (0x370, 0x530), (0x590, 0x700), (0x900, 0xE00), (0x1100, 0x1200), (0x1E00, 0x2070),
              (0x3000, 0x3100), (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0xF900, 0xFB00), (0xFE00, 0x10000),
              (0x1F300, 0x1F700), (0x20000, 0x20100), (0xE0000, 0xE0080)]
    extras = ["[UNK]", "[SEP]", "[CLS]", "[MASK]", "[PAD]", "   ", "x" * 101, "\u0301", "\x00", "\ufffd", "\x0b"]

    def one() -> str:
        out = []
        for _ in range(rng.randint(0, 60)):
            roll = rng.random()
            if roll < 0.45:
                out.append(rng.choice(common))
            elif roll < 0.8:
                low, high = rng.choice(blocks)
                out.append(chr(rng.randrange(low, high)))
            elif roll < 0.95:
                code = rng.randrange(0x110000 - 0x800)
                out.append(chr(code + 0x800 if code >= 0xD800 else code))  # no surrogates
            else:
                out.append(rng.choice(extras))
        return "".join(out)

    return [one() for _ in range(count)]


# --------------------------------------------------------------------------- which encoder is used
def test_minilm_qualifies_and_roberta_bpe_does_not(minilm):
    assert PairEncoder(minilm, 512).engine == "nanotoken"
    assert PairEncoder(roberta_like(), 64).engine == "tokenizers"  # byte-level BPE: nanotoken refuses it
    assert PairEncoder(minilm, 512, fast=False).engine == "tokenizers"


def test_missing_package_falls_back_silently(minilm, monkeypatch):
    monkeypatch.setitem(sys.modules, "nanotoken", None)  # import nanotoken now raises ImportError
    encoder = PairEncoder(minilm, 512)
    assert encoder.engine == "tokenizers"
    assert "not installed" in fast_tokenization.why_not_fast(encoder.single)
    assert_pairs_match(minilm, encoder, [("a query", "a document, with words"), ("", "naïve")], 512)


def test_environment_turns_it_off(minilm, monkeypatch):
    monkeypatch.setenv("CROSSENC_FAST_TOKENIZER", "0")
    assert PairEncoder(minilm, 512).engine == "tokenizers"


def test_pickled_encoder_keeps_the_engine(minilm):
    encoder = pickle.loads(pickle.dumps(PairEncoder(minilm, 64)))
    assert encoder.engine == "nanotoken"
    assert pickle.loads(pickle.dumps(PairEncoder(minilm, 64, fast=False))).engine == "tokenizers"
    assert_pairs_match(minilm, encoder, [("query", "a long document " * 40)], 64)


# --------------------------------------------------------------------------- planted differences
CYRILLIC = "".join(map(chr, range(0x400, 0x500)))  # one block of 256 code points


class Planted:
    """The real engine, with wrong ids for every text that holds one of ``chars`` (or ``word``)."""

    def __init__(self, engine, chars: str = "", word: str | None = None) -> None:
        self.engine, self.chars, self.word = engine, set(chars), word

    def encode_batch(self, texts, add_special_tokens, parallel):
        ids, offsets = self.engine.encode_batch(texts, add_special_tokens=add_special_tokens, parallel=parallel)
        ids = ids.copy()
        for index, text in enumerate(texts):
            hit = not self.chars.isdisjoint(text) or (self.word is not None and self.word in text)
            if hit and offsets[index + 1] > offsets[index]:
                ids[offsets[index]] = 999  # one wrong id, same length
        return ids, offsets


def test_planted_difference_in_one_script_sends_those_texts_to_tokenizers(minilm, monkeypatch):
    real = fast_tokenization.load_engine
    monkeypatch.setattr(fast_tokenization, "load_engine", lambda backend: Planted(real(backend), CYRILLIC))
    encoder = PairEncoder(minilm, 32)
    assert isinstance(encoder.texts, FastTextEncoder) and encoder.texts.bad_chars == set(map(ord, CYRILLIC))
    texts = ["ёжик в тумане", "plain english", "naïve café", "Жж", "東京"]
    assert texts_of(encoder, texts) == hf_texts(minilm, texts)
    pairs = [(query, document) for query in texts for document in texts]
    assert_pairs_match(minilm, encoder, pairs, 32)
    # Without the per-text routing the planted engine would be wrong: the test can fail.
    unrouted = FastTextEncoder(encoder.texts.fast, encoder.texts.fallback)
    assert unrouted.encode(["ёжик"])[0].tolist() != hf_texts(minilm, ["ёжик"])[0]


def test_planted_difference_on_one_character_sends_only_its_texts_to_tokenizers(minilm, monkeypatch):
    real = fast_tokenization.load_engine
    monkeypatch.setattr(fast_tokenization, "load_engine", lambda backend: Planted(real(backend), "\u0b8b"))
    encoder = PairEncoder(minilm, 32)
    assert encoder.texts.bad_chars == {0x0B8B}  # one Tamil letter; the rest of its block stays fast
    texts = ["\u0b8b", "x\u0b8by", "\u0b85\u0b86", "plain"]
    assert texts_of(encoder, texts) == hf_texts(minilm, texts)


def test_verdict_is_cached_per_tokenizer_and_versions(minilm, monkeypatch, tmp_path):
    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path))
    assert PairEncoder(minilm, 32).engine == "nanotoken"
    (saved,) = (tmp_path / "fast-tokenizer").glob("*.json")
    assert json.loads(saved.read_text()) == {"usable": True, "bad_chars": [], "why": ""}
    monkeypatch.setattr(fast_tokenization, "_CHECKED", {})
    monkeypatch.setattr(fast_tokenization, "self_check", lambda *args: pytest.fail("checked again"))
    assert PairEncoder(minilm, 64).engine == "nanotoken"  # the verdict read back, not checked again
    saved.write_text(json.dumps({"usable": False, "bad_chars": [], "why": "planted verdict"}))
    monkeypatch.setattr(fast_tokenization, "_CHECKED", {})
    assert PairEncoder(minilm, 64).engine == "tokenizers"


def test_planted_difference_in_ascii_disables_the_engine(minilm, monkeypatch):
    real = fast_tokenization.load_engine
    monkeypatch.setattr(fast_tokenization, "load_engine", lambda backend: Planted(real(backend), "e"))
    encoder = PairEncoder(minilm, 32)
    assert encoder.engine == "tokenizers"
    assert "differs from tokenizers" in fast_tokenization.why_not_fast(encoder.single)
    assert_pairs_match(minilm, encoder, [("the query", "the document")], 32)


def test_planted_difference_in_context_only_disables_the_engine(minilm, monkeypatch):
    # Wrong only on a special token's text: every character passes alone, an edge-case probe catches it.
    real = fast_tokenization.load_engine
    monkeypatch.setattr(fast_tokenization, "load_engine", lambda backend: Planted(real(backend), word="[MASK]"))
    encoder = PairEncoder(minilm, 32)
    assert encoder.engine == "tokenizers"
    assert "[MASK]" in fast_tokenization.why_not_fast(encoder.single)


# --------------------------------------------------------------------------- exactness on samples
def test_edge_cases_identical_and_truncated_both_sides(minilm):
    encoder = PairEncoder(minilm, 512)
    texts = list(EDGE_PROBES) + ["", "a" * 500, "word " * 300]
    assert texts_of(encoder, texts) == hf_texts(minilm, texts)
    pairs = [(first, second) for first in texts[::3] for second in texts[1::3]]
    for max_length in (3, 4, 16, 64, 512):
        assert_pairs_match(minilm, PairEncoder(minilm, max_length), pairs, max_length)
    left = AutoTokenizer.from_pretrained(minilm.name_or_path, truncation_side="left")
    assert_pairs_match(left, PairEncoder(left, 16), pairs, 16)


def test_fuzzed_texts_of_every_plane_identical(minilm):
    encoder = PairEncoder(minilm, 48)
    texts = fuzz_texts(3000)
    assert encoder.engine == "nanotoken"
    assert texts_of(encoder, texts) == hf_texts(minilm, texts)
    pairs = list(zip(texts[:400], texts[400:800]))
    assert_pairs_match(minilm, encoder, pairs, 48)


def test_every_debian_text_identical(minilm):
    from crossenc.workloads import load_debian

    workload = load_debian()
    texts = list(dict.fromkeys(text for query in workload.queries for text in (query.query, *query.documents)))
    encoder = PairEncoder(minilm, 512)
    assert len(texts) > 20_000 and encoder.engine == "nanotoken"
    assert texts_of(encoder, texts) == hf_texts(minilm, texts)
    pairs = load_debian().subset(300, 10).pairs()  # pairs: the assembly and truncation on top
    assert_pairs_match(minilm, encoder, pairs, 512)
    assert_pairs_match(minilm, PairEncoder(minilm, 64), pairs[:300], 64)


def test_every_stdlib_docstring_identical(minilm):
    from crossenc.workloads import load_docstrings, stdlib_docstrings

    texts = list(stdlib_docstrings().values())
    encoder = PairEncoder(minilm, 512)
    assert len(texts) > 1000
    assert texts_of(encoder, texts) == hf_texts(minilm, texts)
    pairs = load_docstrings(10, 30).pairs()
    assert_pairs_match(minilm, encoder, pairs, 512)
    assert_pairs_match(minilm, PairEncoder(minilm, 96), pairs, 96)


def test_every_code_point_identical(minilm):
    """Each code point alone, inside a word and doubled: no block of Unicode is left to the probes."""
    encoder = PairEncoder(minilm, 512)
    codes = [code for code in range(0x110000) if not 0xD800 <= code < 0xE000]
    texts = [" ".join(f"{chr(code)} a{chr(code)}b {chr(code) * 2}" for code in codes[start : start + 256])
             for start in range(0, len(codes), 256)]
    got, expected = texts_of(encoder, texts), hf_texts(minilm, texts)
    wrong = [hex(codes[index * 256]) for index in range(len(texts)) if got[index] != expected[index]]
    assert not wrong, wrong[:10]


def test_fallback_encoder_slices_and_empty_input(minilm):
    hub = HubTextEncoder(PairEncoder(minilm, 64, fast=False).single)
    ids, lengths = hub.encode([])
    assert ids.dtype == np.int32 and lengths.dtype == np.int64 and len(ids) == len(lengths) == 0
    fast = text_encoder(PairEncoder(minilm, 64).single)
    ids, lengths = fast.encode([])
    assert ids.dtype == np.int32 and len(ids) == len(lengths) == 0
    ids, lengths = fast.encode(["", "a b"])
    assert lengths.tolist() == [0, 2] and ids.dtype == np.int32
