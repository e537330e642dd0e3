"""Validate and normalise what users pass to predict/rank; errors name the bad value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import replace
from typing import Any

import numpy as np

from crossenc.pair_encoding import EncodedPairs

Pair = tuple[str, str]


class InputTypeError(TypeError, ValueError):
    """An input of the wrong type. Also a ValueError, which sentence-transformers raises for these,
    so code written against it catches it unchanged."""


def clean_text(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) with U+FFFD; other text is untouched."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _check_member(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{where} is {type(value).__name__} {value!r:.60}; expected str")
    return clean_text(value)


def _check_pair(pair: Any, where: str) -> Pair:
    if isinstance(pair, np.ndarray):
        pair = pair.tolist()
    if isinstance(pair, str) or not isinstance(pair, (list, tuple)):
        raise InputTypeError(f"{where} is {type(pair).__name__} {pair!r:.60}; expected a (query, document) pair")
    if len(pair) != 2:
        raise ValueError(f"{where} has {len(pair)} items; expected (query, document)")
    return _check_member(pair[0], f"{where}[0]"), _check_member(pair[1], f"{where}[1]")


def normalize_pairs(sentences: Any) -> tuple[list[Pair], bool]:
    """Return ``(pairs, is_single)``: one pair or a sequence of pairs, as sentence-transformers reads it."""
    if sentences is None:
        raise InputTypeError("inputs is None; expected a (query, document) pair or a list of pairs")
    if isinstance(sentences, (str, bytes)):
        raise InputTypeError(
            f"inputs is a bare {type(sentences).__name__}; expected a (query, document) pair or a list of pairs"
        )
    if isinstance(sentences, (Mapping, Set)):
        raise InputTypeError(f"inputs is a {type(sentences).__name__}; expected an ordered list of (query, document) pairs")
    if isinstance(sentences, np.ndarray):
        if sentences.dtype.kind not in ("U", "O"):
            raise InputTypeError(f"inputs is a numpy array of dtype {sentences.dtype}; expected strings")
        sentences = sentences.tolist()
    if not isinstance(sentences, Sequence):
        try:
            sentences = list(sentences)
        except TypeError:
            raise InputTypeError(
                f"inputs is {type(sentences).__name__}; expected a (query, document) pair or a list of pairs"
            ) from None
    if len(sentences) == 0:
        return [], False
    if not isinstance(sentences[0], (list, tuple, np.ndarray)):
        return [_check_pair(sentences, "the pair")], True
    return [_check_pair(pair, f"pairs[{index}]") for index, pair in enumerate(sentences)], False


def check_flag(name: str, value: Any) -> bool:
    """A True/False option; a string such as "false" would otherwise read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r}; expected True or False")
    return bool(value)


def check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_rank_inputs(query: Any, documents: Any, top_k: Any) -> tuple[str, list[str]]:
    query = _check_member(query, "query")
    if documents is None or isinstance(documents, (str, bytes)):
        raise InputTypeError(f"documents must be a list of str, got {type(documents).__name__}")
    documents = list(documents)
    cleaned = [_check_member(doc, f"documents[{index}]") for index, doc in enumerate(documents)]
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise TypeError(f"top_k must be an int or None, got {type(top_k).__name__}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
    return query, cleaned


def check_encoded_pairs(
    encoded: EncodedPairs,
    *,
    max_length: int,
    num_special: int,
    vocab_size: int,
    type_vocab_size: int,
    uses_token_type_ids: bool,
) -> EncodedPairs:
    """``encoded`` as a model reads it (type ids dropped if it reads none), or a ValueError/TypeError naming
    what makes it unusable: bad arrays, an empty pair, one shorter than the ``num_special`` special tokens or
    longer than ``max_length``, ids outside the vocabulary, type ids missing or out of range (sizes of 0:
    unknown, not checked)."""
    if not isinstance(encoded, EncodedPairs):
        raise InputTypeError(
            f"predict_tokenized takes the EncodedPairs of tokenize_pairs(), got {type(encoded).__name__}"
        )
    for name in ("ids", "offsets", "type_ids"):
        array = getattr(encoded, name)
        if array is None and name == "type_ids":
            continue
        if not isinstance(array, np.ndarray) or array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise InputTypeError(f"EncodedPairs.{name} must be a 1-D numpy array of integers")
    offsets, ids = encoded.offsets, encoded.ids
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(ids) or (offsets[1:] < offsets[:-1]).any():
        raise ValueError("EncodedPairs.offsets must start at 0, never decrease and end at len(ids)")
    lengths = np.diff(offsets)
    if len(lengths) == 0:
        return replace(encoded, type_ids=None)  # nothing to score
    if lengths.min() == 0:
        raise ValueError("a tokenized pair is empty (0 tokens): there is nothing to score")
    if lengths.min() < num_special:
        raise ValueError(
            f"a tokenized pair has {int(lengths.min())} tokens; every pair has at least its {num_special} "
            "special tokens: tokenize with this model's tokenize_pairs()"
        )
    if lengths.max() > max_length:
        raise ValueError(
            f"a tokenized pair has {int(lengths.max())} tokens, more than this CrossEncoder's "
            f"max_length={max_length}: tokenize with this model's tokenize_pairs()"
        )
    _check_id_range("token ids", ids, vocab_size, "vocabulary")
    if not uses_token_type_ids:
        return replace(encoded, type_ids=None) if encoded.type_ids is not None else encoded  # as predict does
    if encoded.type_ids is None:
        raise ValueError("this model reads token type ids; EncodedPairs.type_ids is None")
    if len(encoded.type_ids) != len(ids):
        raise ValueError(f"EncodedPairs has {len(ids)} ids but {len(encoded.type_ids)} type ids")
    _check_id_range("type ids", encoded.type_ids, type_vocab_size, "type_vocab_size")
    return encoded


def _check_id_range(what: str, values: np.ndarray, size: int, limit_name: str) -> None:
    """ValueError unless every value is >= 0 and, when ``size`` is known (> 0), below it: out-of-range ids
    would fail inside an embedding lookup (on CUDA, a device assert that breaks the context)."""
    if not len(values):
        return
    if values.min() < 0:
        raise ValueError(f"{what} must not be negative (got {int(values.min())})")
    if size and values.max() >= size:
        raise ValueError(f"{what} must lie in [0, {size}) for this model's {limit_name} (got {int(values.max())})")


def features_from_encoded(encoded: EncodedPairs, pad_token_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``/``attention_mask`` (and ``token_type_ids``) tensors of ``encoded``."""
    import torch

    from crossenc.batching import collate

    if len(encoded) == 0:
        empty = torch.zeros((0, 0), dtype=torch.long)
        features = {"input_ids": empty, "attention_mask": empty.clone()}
        return features if encoded.type_ids is None else {**features, "token_type_ids": empty.clone()}
    batch = collate(encoded, np.arange(len(encoded)), pad_token_id)
    features = {"input_ids": torch.from_numpy(batch.input_ids), "attention_mask": torch.from_numpy(batch.attention_mask)}
    if batch.token_type_ids is not None:
        features["token_type_ids"] = torch.from_numpy(batch.token_type_ids)
    return features


def encoded_from_features(features: Mapping[str, Any]) -> EncodedPairs:
    """The EncodedPairs of right-padded feature tensors (``preprocess``'s output); ValueError otherwise."""
    if not isinstance(features, Mapping) or "input_ids" not in features:
        raise InputTypeError("features must be a dict with 'input_ids' (and 'attention_mask'), as preprocess() returns")
    arrays = {name: _as_2d_array(name, value) for name, value in features.items()
              if name in ("input_ids", "attention_mask", "token_type_ids")}
    ids = arrays["input_ids"]
    mask = arrays.get("attention_mask", np.ones_like(ids))
    if mask.shape != ids.shape or ("token_type_ids" in arrays and arrays["token_type_ids"].shape != ids.shape):
        raise ValueError(f"features' tensors differ in shape: { {name: a.shape for name, a in arrays.items()} }")
    lengths = (mask != 0).sum(axis=1)
    if ((np.arange(ids.shape[1]) < lengths[:, None]) != (mask != 0)).any():
        raise ValueError("features must be right-padded: each attention_mask row is 1s, then 0s")
    real = mask != 0
    type_ids = arrays["token_type_ids"][real].astype(np.int8) if "token_type_ids" in arrays else None
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return EncodedPairs(ids[real].astype(np.int32), type_ids, offsets)


def _as_2d_array(name: str, value: Any) -> np.ndarray:
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"features[{name!r}] must be a 2-D integer tensor [batch, tokens], got {array.dtype} {array.shape}")
    return array
