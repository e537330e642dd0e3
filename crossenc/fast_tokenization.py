"""Texts to token ids: a compiled WordPiece encoder where its ids are Hugging Face's, Hugging Face's elsewhere.

Encoding texts in the Rust ``tokenizers`` library is what bounds the host on a GPU (~90 us per
Debian text per core on the 2-core EPYC, docs/tokenization.md). ``nanotoken`` (the ``fast``
extra) encodes BERT-style WordPiece tokenizers 50x faster per core on the same texts. It is
trusted only as far as it is checked, once per tokenizer and process:

- it must load the tokenizer (it refuses what it does not implement: BPE, Unigram, other
  normalizers or pre-tokenizers);
- it is compared with Hugging Face on a probe of every block of 256 code points of Unicode; a
  text holding a character of a block that differed is encoded by Hugging Face instead (per
  text), and a difference in the first block (ASCII, Latin-1) rules the engine out;
- with that routing, it must give Hugging Face's ids on every edge-case probe (accents, CJK,
  control characters, long words, special tokens, odd whitespace), else it is not used for
  this tokenizer at all.

Without the package, or for tokenizers it does not qualify for, every text goes through
``tokenizers`` as before; ``CROSSENC_FAST_TOKENIZER=0`` turns it off. Either way the output is
one flat int32 id array and the per-text lengths, so the pair assembly never sees per-text lists.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import threading
from collections.abc import Sequence

import numpy as np

ENCODE_CHUNK = 2048  # texts per Hugging Face call: bounds its per-text Python objects
FAST_ENGINE = "nanotoken"
FAST_EXTRA = "fast"
PAGE_BITS = 8  # blocks of 256 code points: the unit of the per-text fallback
_PAGES = 0x110000 >> PAGE_BITS
_SURROGATES = range(0xD800 >> PAGE_BITS, 0xE000 >> PAGE_BITS)

# Edge cases a WordPiece reimplementation is likeliest to get wrong (any difference: not used at all).
EDGE_PROBES = (
    "", " ", "  \t\n\r ", "Hello, World! It's 3.14 -- isn't it?", "don't can't I'm we'll y'all",
    "Ünïcödé Çafé naïve résumé façade Ångström", "crème brûlée ÀÉÎÕÜ àéîõü ÿŸ", "ﬁ ﬂ ½ ² ™ Ⅻ ㎏",
    "東京タワー 中文字符 한국어 ひらがな カタカナ", "𠀀𠀁 𪚥 CJK-ext", "a\x00b\x01c\x7f d\u200be\ufeff f\u00adg",
    "x\ufffdy", "\u0301x a\u0301 e\u0300\u0301\u0302", "tab\there\nnew\rret", "a\x0bb\x0cc\x1cd\x1fe\x85f",
    "non\xa0breaking\u3000wide\u2003em\u202fthin", "a\u2028b\u2029c", "ΟΔΟΣ Σίσυφος ΆΈΉ", "İstanbul ıi İI",
    "ǅ ǈ ǋ titlecase ß ẞ", "Ελληνικά Русский язык Українська", "العربية עברית فارسی", "हिन्दी বাংলা தமிழ் ไทย",
    "emoji 😀👍🏽 👨‍👩‍👧 ❤️", "a--b...c!!!?¿¡ «quotes» “curly” ‘single’ „low“", "C++/C#; x=y+z*(w)[0]{1}<2>|3~4^5`6",
    "snake_case camelCase PascalCase kebab-case 3rd 1st 2.5GHz 10,000",
    "[UNK] [CLS] [SEP] [PAD] [MASK] x[SEP]y [unk] [Unk]", "[CLS][SEP][MASK]", "##ing ## # ###",
    "x" * 99, "y" * 100, "z" * 101, "supercalifragilisticexpialidocious" * 4, "é" * 101, "東" * 150,
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    ">>> print(f'{x!r:>10}')\n... return None  # comment", "https://example.org/a/b?c=d&e=f#g user@example.com",
    "\u202eright-to-left override\u202c \u200e\u200f", "\U000e0041\U000e0042 tags \U000f0000 private \ue000",
)


def fast_tokenizer_enabled() -> bool:
    """``CROSSENC_FAST_TOKENIZER=0`` (or false/no/off) turns the compiled encoder off everywhere."""
    return os.environ.get("CROSSENC_FAST_TOKENIZER", "1").strip().lower() not in ("0", "false", "no", "off")


def flatten_ids(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(flat int32 ids, int64 lengths) of per-text id lists."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum())), lengths


class HubTextEncoder:
    """Texts through the ``tokenizers`` backend (no special tokens), a slice at a time."""

    engine = "tokenizers"

    def __init__(self, backend) -> None:
        self.backend = backend
        # encode_batch_fast (tokenizers >= 0.21) skips character offsets: same ids, less work.
        self._encode = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat int32 ids, int64 lengths), text after text."""
        flat = [  # a slice at a time, so the tokenizer's Python objects never hold the whole call
            flatten_ids([encoding.ids for encoding in self._encode(list(texts[start : start + ENCODE_CHUNK]),
                                                                    add_special_tokens=False)])
            for start in range(0, len(texts), ENCODE_CHUNK)
        ]
        if not flat:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        return np.concatenate([ids for ids, _ in flat]), np.concatenate([lengths for _, lengths in flat])


class FastTextEncoder:
    """The compiled encoder for texts it was checked on; the others (``fallback``) through ``tokenizers``.

    ``bad_pages``: blocks of 256 code points whose probe differed; a text with a character in
    one of them is encoded by ``fallback``. ``parallel``: let the engine use its thread pool.
    """

    engine = FAST_ENGINE

    def __init__(self, engine, fallback: HubTextEncoder, bad_pages: frozenset[int] = frozenset(),
                 parallel: bool = True) -> None:
        self.fast = engine
        self.fallback = fallback
        self.bad_pages = bad_pages
        self.parallel = parallel
        self._routed = _page_pattern(bad_pages)

    def _encode_fast(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = self.fast.encode_batch(texts, add_special_tokens=False, parallel=self.parallel)
        return ids.astype(np.int32), np.diff(offsets)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat int32 ids, int64 lengths), text after text, each text by the encoder it qualifies for."""
        if self._routed is None:
            return self._encode_fast(texts)
        search = self._routed.search
        routed = np.fromiter((not text.isascii() and search(text) is not None for text in texts), bool, len(texts))
        if not routed.any():
            return self._encode_fast(texts)
        fast_index, slow_index = np.flatnonzero(~routed), np.flatnonzero(routed)
        fast_ids, fast_lengths = self._encode_fast([texts[i] for i in fast_index])
        slow_ids, slow_lengths = self.fallback.encode([texts[i] for i in slow_index])
        lengths = np.empty(len(texts), np.int64)
        lengths[fast_index], lengths[slow_index] = fast_lengths, slow_lengths
        starts = np.empty(len(texts), np.int64)  # where each text's ids start in fast_ids + slow_ids
        starts[fast_index] = np.cumsum(fast_lengths) - fast_lengths
        starts[slow_index] = len(fast_ids) + np.cumsum(slow_lengths) - slow_lengths
        source = np.concatenate([fast_ids, slow_ids])
        return source[concatenated_ranges(starts, lengths)], lengths


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, start + length)`` for every (start, length), vectorized."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    step = np.ones(total, dtype=np.int64)
    nonempty = lengths > 0
    first_positions = (ends - lengths)[nonempty]
    if len(first_positions):
        # At each range's first slot, jump from the previous range's last value to this range's start.
        previous_last = np.concatenate([[0], (starts + lengths - 1)[nonempty][:-1]])
        step[first_positions] = starts[nonempty] - previous_last
    return np.cumsum(step)


def _page_pattern(pages: frozenset[int]) -> re.Pattern | None:
    if not pages:
        return None
    ranges = "".join(f"{re.escape(chr(page << PAGE_BITS))}-{re.escape(chr(((page + 1) << PAGE_BITS) - 1))}"
                     for page in sorted(pages))
    return re.compile(f"[{ranges}]")


def page_probes(seed: int = 0, per_page: int = 6) -> list[tuple[int, str]]:
    """One probe text per block of 256 code points: ``per_page`` of its characters alone, inside
    words, next to punctuation, doubled, and after a combining mark."""
    rng = random.Random(seed)
    probes = []
    for page in range(_PAGES):
        if page in _SURROGATES:
            continue
        chars = [chr((page << PAGE_BITS) + offset) for offset in rng.sample(range(1 << PAGE_BITS), per_page)]
        a, b, c, d, e, f = (chars * 6)[:6]
        probes.append((page, f"{a} x{b}y {c}{c}, ({d}) {e}\u0301{f}ab {''.join(chars)}"))
    return probes


def self_check(engine, fallback: HubTextEncoder) -> tuple[bool, frozenset[int], str]:
    """(usable, bad pages, why not): the engine against Hugging Face on a probe of every page, then,
    with texts of the pages that differed routed to Hugging Face, on the edge cases."""
    def differ(encoder: FastTextEncoder, texts: list[str]) -> list[bool]:
        fast_ids, fast_lengths = encoder.encode(texts)
        slow_ids, slow_lengths = fallback.encode(texts)
        fast_ends, slow_ends = np.cumsum(fast_lengths), np.cumsum(slow_lengths)
        return [
            bool(fast_lengths[i] != slow_lengths[i])
            or not np.array_equal(fast_ids[fast_ends[i] - fast_lengths[i] : fast_ends[i]],
                                  slow_ids[slow_ends[i] - slow_lengths[i] : slow_ends[i]])
            for i in range(len(texts))
        ]

    probes = page_probes()
    unrouted = FastTextEncoder(engine, fallback, parallel=False)
    bad = frozenset(page for (page, _), wrong in zip(probes, differ(unrouted, [text for _, text in probes])) if wrong)
    if 0 in bad:  # ASCII and Latin-1: nearly every text would fall back
        return False, bad, "differs from tokenizers on ASCII / Latin-1 probes"
    edge = differ(FastTextEncoder(engine, fallback, bad, parallel=False), list(EDGE_PROBES))
    if any(edge):
        return False, bad, f"differs from tokenizers on {EDGE_PROBES[edge.index(True)]!r}"
    return True, bad, ""


_CHECKED: dict[str, tuple[object, bool, frozenset[int], str]] = {}  # tokenizer JSON digest -> engine, verdict
_CHECK_LOCK = threading.Lock()


def _engine_module():
    """The ``fast`` extra's package, or None when it is not installed."""
    try:
        import nanotoken
    except ImportError:
        return None
    return nanotoken


def load_engine(backend):
    """The compiled engine for ``backend``'s tokenizer, or None (package missing, tokenizer refused)."""
    module = _engine_module()
    if module is None:
        return None
    try:
        return module.WordPieceTokenizer.from_json(backend.to_str())
    except (module.UnsupportedTokenizerError, ValueError, TypeError):
        return None


def text_encoder(backend, fast: bool = True, parallel: bool = True) -> HubTextEncoder | FastTextEncoder:
    """What encodes texts (no special tokens) for ``backend``: the compiled engine where it qualifies.

    ``backend`` is a ``tokenizers.Tokenizer`` without truncation or padding. The check runs once
    per tokenizer (its serialized JSON) and process.
    """
    fallback = HubTextEncoder(backend)
    if not fast or not fast_tokenizer_enabled() or _engine_module() is None:
        return fallback
    engine, usable, bad_pages, _ = _checked_engine(backend, fallback)
    if not usable:
        return fallback
    return FastTextEncoder(engine, fallback, bad_pages, parallel=parallel)


def _checked_engine(backend, fallback: HubTextEncoder) -> tuple[object, bool, frozenset[int], str]:
    key = hashlib.sha256(backend.to_str().encode()).hexdigest()
    with _CHECK_LOCK:
        if key not in _CHECKED:
            engine = load_engine(backend)
            if engine is None:
                _CHECKED[key] = (None, False, frozenset(), f"{FAST_ENGINE} does not implement this tokenizer")
            else:
                _CHECKED[key] = (engine, *self_check(engine, fallback))
        return _CHECKED[key]


def why_not_fast(backend) -> str:
    """Why ``backend``'s texts are not encoded by the compiled engine ('' when they are)."""
    if not fast_tokenizer_enabled():
        return "turned off by CROSSENC_FAST_TOKENIZER"
    if _engine_module() is None:
        return f"{FAST_ENGINE} is not installed (pip install 'crossenc[{FAST_EXTRA}]')"
    return _checked_engine(backend, HubTextEncoder(backend))[3]
