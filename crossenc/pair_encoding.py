"""Tokenize (query, document) pairs exactly as Hugging Face does, each distinct text once.

A fast tokenizer encodes a pair by encoding the two texts on their own, truncating the two
encodings (``longest_first``), then adding its post-processor's special tokens. :class:`PairEncoder`
does the same with the first step shared: every distinct text of a call is tokenized once (a
``rank()`` call repeats its query for every document; batch scoring repeats documents across
queries), then the pairs are cut and assembled with numpy. Encoding the texts is the expensive
part (~90 us per Debian text per core in ``tokenizers``), so it goes through
:mod:`crossenc.fast_tokenization`: a compiled WordPiece encoder where it gives Hugging Face's ids,
``tokenizers`` elsewhere. Tokenizers whose pair layout or truncation this cannot reproduce are
encoded pair by pair, by ``tokenizers``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# concatenated_ranges lives with the text encoders (below this module); batching imports it from here.
from crossenc.fast_tokenization import ENCODE_CHUNK, concatenated_ranges, flatten_ids, text_encoder
from crossenc.predictor import running_offsets
_PROBES = (("alpha beta gamma", "delta epsilon"), ("zeta", "eta theta iota kappa lambda"))


@dataclass(frozen=True)
class EncodedPairs:
    """Token ids of N pairs, concatenated: pair i is ``ids[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray  # int32 [total_tokens]
    type_ids: np.ndarray | None  # int8 [total_tokens] or None
    offsets: np.ndarray  # int64 [N + 1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass(frozen=True)
class PairLayout:
    """Where a post-processor puts its special tokens around texts A and B, and their type ids."""

    prefix: tuple[int, ...]  # before A
    middle: tuple[int, ...]  # between A and B
    suffix: tuple[int, ...]  # after B
    prefix_types: tuple[int, ...]
    middle_types: tuple[int, ...]
    suffix_types: tuple[int, ...]
    first_type: int
    second_type: int

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def expected(self, first: Sequence[int], second: Sequence[int]) -> tuple[list[int], list[int]]:
        ids = [*self.prefix, *first, *self.middle, *second, *self.suffix]
        types = [
            *self.prefix_types,
            *[self.first_type] * len(first),
            *self.middle_types,
            *[self.second_type] * len(second),
            *self.suffix_types,
        ]
        return ids, types


def learn_layout(single) -> PairLayout | None:
    """Read the pair layout off the post-processor with probe texts; None if it is not ``pre A mid B suf``."""
    layout = None
    for first_text, second_text in _PROBES:
        first = single.encode(first_text, add_special_tokens=False)
        second = single.encode(second_text, add_special_tokens=False)
        merged = single.post_process(first, second, add_special_tokens=True)
        if layout is None:
            layout = _split_layout(merged.ids, merged.type_ids, first.ids, second.ids)
            if layout is None:
                return None
        if layout.expected(first.ids, second.ids) != (merged.ids, merged.type_ids):
            return None
    return layout


def _split_layout(ids: list[int], types: list[int], first: list[int], second: list[int]) -> PairLayout | None:
    if not first or not second:
        return None
    for start in range(len(ids) - len(first) + 1):
        if ids[start : start + len(first)] != first:
            continue
        end_first = start + len(first)
        for second_start in range(end_first, len(ids) - len(second) + 1):
            if ids[second_start : second_start + len(second)] != second:
                continue
            end_second = second_start + len(second)
            first_types = set(types[start:end_first])
            second_types = set(types[second_start:end_second])
            if len(first_types) != 1 or len(second_types) != 1:
                return None
            return PairLayout(
                prefix=tuple(ids[:start]),
                middle=tuple(ids[end_first:second_start]),
                suffix=tuple(ids[end_second:]),
                prefix_types=tuple(types[:start]),
                middle_types=tuple(types[end_first:second_start]),
                suffix_types=tuple(types[end_second:]),
                first_type=first_types.pop(),
                second_type=second_types.pop(),
            )
    return None


def longest_first_lengths(first: np.ndarray, second: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Kept token counts of each text under ``longest_first`` truncation to ``budget`` text tokens.

    The rule of the ``tokenizers`` library (``truncate_encodings``): when the pair is too long,
    the shorter text keeps all of itself if that leaves the longer one at least as many tokens,
    the longer one gets the rest; otherwise both get half, the longer one the odd token (the
    second text on a tie).
    """
    first = np.asarray(first, dtype=np.int64)
    second = np.asarray(second, dtype=np.int64)
    shorter = np.minimum(first, second)
    longer_kept = np.where(shorter > budget, shorter, np.maximum(shorter, budget - shorter))
    shorter_kept = shorter
    halve = shorter_kept + longer_kept > budget
    shorter_kept = np.where(halve, budget // 2, shorter_kept)
    longer_kept = np.where(halve, budget // 2 + budget % 2, longer_kept)
    swapped = first > second
    first_kept = np.where(swapped, longer_kept, shorter_kept)
    second_kept = np.where(swapped, shorter_kept, longer_kept)
    too_long = first + second > budget
    return (
        np.where(too_long, np.minimum(first, first_kept), first),
        np.where(too_long, np.minimum(second, second_kept), second),
    )


def truncating_backend(tokenizer, max_length: int):
    """A private copy of the fast tokenizer's Rust backend, set to truncate pairs like Hugging Face.

    Hugging Face's ``tokenizer(queries, documents, truncation="longest_first", max_length=N)`` sets
    exactly this truncation on its backend and calls ``encode_batch``. Never mutated after this,
    so concurrent encodes are safe. A ``tokenizers.Tokenizer`` keeps its own truncation (its copy
    loses only its padding, which would put pad tokens inside the pairs).
    """
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        backend = copy.deepcopy(tokenizer)
        backend.no_padding()
        return backend
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.enable_truncation(max_length, stride=0, strategy="longest_first", direction=tokenizer.truncation_side)
    return backend


class PairEncoder:
    """Encode pairs to :class:`EncodedPairs`: each distinct text once (``split``) or pair by pair (``joint``).

    ``split=False`` forces pair-by-pair encoding (Hugging Face's own path, kept for comparison);
    ``fast=False`` encodes split texts with ``tokenizers`` only, never the compiled engine
    (:mod:`crossenc.fast_tokenization`). Picklable, so tokenizer worker processes get their own copy.
    """

    def __init__(self, tokenizer, max_length: int, split: bool = True, fast: bool = True) -> None:
        self.pairs_backend = truncating_backend(tokenizer, max_length)
        truncation = self.pairs_backend.truncation
        self.single = copy.deepcopy(self.pairs_backend)
        self.single.no_truncation()
        self.layout = learn_layout(self.single) if split and _split_supported(truncation) else None
        self.max_length = truncation["max_length"] if truncation else None
        if self.layout is not None and self.max_length is not None and self.max_length < self.layout.num_special:
            self.layout = None  # the library then skips truncation altogether; leave that case to it
        self.truncate_left = bool(truncation) and truncation.get("direction") == "left"
        self.fast = fast
        self.texts = text_encoder(self.single, fast) if self.layout is not None else None
        # encode_batch_fast (tokenizers >= 0.21) skips character offsets: same ids, less work.
        self._encode_pairs = getattr(self.pairs_backend, "encode_batch_fast", self.pairs_backend.encode_batch)

    @property
    def mode(self) -> str:
        return "split" if self.layout is not None else "joint"

    @property
    def engine(self) -> str:
        """What encodes the texts: ``nanotoken`` (the compiled engine, where exact) or ``tokenizers``."""
        return self.texts.engine if self.texts is not None else "tokenizers"

    def __reduce__(self):
        # The backend carries its truncation, so max_length is not needed to rebuild it.
        return PairEncoder, (self.pairs_backend, 0, self.layout is not None, self.fast)

    def encode(self, pairs: Sequence[tuple[str, str]], use_token_type_ids: bool) -> EncodedPairs:
        """Split: every distinct text of the call once; joint: pair by pair, in chunks."""
        if self.layout is not None:
            return self._encode_split(pairs, use_token_type_ids)
        chunks = [
            self._encode_joint(pairs[start : start + ENCODE_CHUNK], use_token_type_ids)
            for start in range(0, len(pairs), ENCODE_CHUNK)
        ]
        return _concatenate(chunks, use_token_type_ids)

    def _encode_joint(self, pairs: Sequence[tuple[str, str]], use_token_type_ids: bool) -> EncodedPairs:
        encodings = self._encode_pairs([(pair[0], pair[1]) for pair in pairs])
        ids, lengths = flatten_ids([encoding.ids for encoding in encodings])
        type_ids = None
        if use_token_type_ids:
            type_ids = np.fromiter(
                itertools.chain.from_iterable(encoding.type_ids for encoding in encodings), dtype=np.int8
            )
        return EncodedPairs(ids=ids, type_ids=type_ids, offsets=running_offsets(lengths))

    def _encode_split(self, pairs: Sequence[tuple[str, str]], use_token_type_ids: bool) -> EncodedPairs:
        layout = self.layout
        slots: dict[str, int] = {}
        first_slot = np.fromiter((slots.setdefault(pair[0], len(slots)) for pair in pairs), np.int64, len(pairs))
        second_slot = np.fromiter((slots.setdefault(pair[1], len(slots)) for pair in pairs), np.int64, len(pairs))
        text_ids, text_lengths = self.texts.encode(list(slots))
        text_starts = running_offsets(text_lengths)[:-1]

        first_len, second_len = text_lengths[first_slot], text_lengths[second_slot]
        if self.max_length is not None:
            budget = max(self.max_length - layout.num_special, 0)
            first_len, second_len = longest_first_lengths(first_len, second_len, budget)
        first_start = text_starts[first_slot] + (text_lengths[first_slot] - first_len if self.truncate_left else 0)
        second_start = text_starts[second_slot] + (text_lengths[second_slot] - second_len if self.truncate_left else 0)

        # Every pair is the same row of pieces, each special token (one token long) and the two texts;
        # output ids gather from one source, the texts' ids followed by the special tokens.
        special_ids = layout.prefix + layout.middle + layout.suffix
        special_types = layout.prefix_types + layout.middle_types + layout.suffix_types
        source = np.concatenate([text_ids, np.array(special_ids, dtype=np.int32)])
        specials = [(len(text_ids) + k, 1, kind) for k, kind in enumerate(special_types)]
        prefix_end, middle_end = len(layout.prefix), len(layout.prefix) + len(layout.middle)
        pieces = [  # (source start, length, type id): scalars, or one value per pair
            *specials[:prefix_end],
            (first_start, first_len, layout.first_type),
            *specials[prefix_end:middle_end],
            (second_start, second_len, layout.second_type),
            *specials[middle_end:],
        ]
        rows = (len(pairs),)
        piece_starts = np.stack([np.broadcast_to(start, rows) for start, _, _ in pieces], axis=1).ravel()
        piece_lengths = np.stack([np.broadcast_to(length, rows) for _, length, _ in pieces], axis=1).ravel()
        ids = source[concatenated_ranges(piece_starts, piece_lengths)]
        type_ids = None
        if use_token_type_ids:
            piece_types = np.tile(np.array([kind for _, _, kind in pieces], dtype=np.int8), len(pairs))
            type_ids = np.repeat(piece_types, piece_lengths)
        lengths = first_len + second_len + layout.num_special
        return EncodedPairs(ids=ids, type_ids=type_ids, offsets=running_offsets(lengths))


def _split_supported(truncation: dict | None) -> bool:
    """Split encoding reproduces no truncation and ``longest_first`` without stride."""
    if truncation is None:
        return True
    return truncation.get("strategy") == "longest_first" and not truncation.get("stride")


def _concatenate(chunks: list[EncodedPairs], use_token_type_ids: bool) -> EncodedPairs:
    if len(chunks) == 1:
        return chunks[0]
    lengths = np.concatenate([chunk.lengths for chunk in chunks]) if chunks else np.zeros(0, np.int64)
    ids = np.concatenate([chunk.ids for chunk in chunks]) if chunks else np.zeros(0, np.int32)
    type_ids = None
    if use_token_type_ids:
        type_ids = np.concatenate([chunk.type_ids for chunk in chunks]) if chunks else np.zeros(0, np.int8)
    return EncodedPairs(ids=ids, type_ids=type_ids, offsets=running_offsets(lengths))
