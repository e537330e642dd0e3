"""Texts to token ids: a compiled WordPiece encoder where its ids are Hugging Face's, Hugging Face's elsewhere.

Encoding texts in the Rust ``tokenizers`` library is what bounds the host on a GPU (~90 us per
Debian text per core on the 2-core EPYC, docs/tokenization.md). ``nanotoken`` (the ``fast``
extra) encodes BERT-style WordPiece tokenizers 50x faster per core on the same texts. It is
trusted only as far as it is checked, once per tokenizer and process:

- it must load the tokenizer (it refuses what it does not implement: BPE, Unigram, other
  normalizers or pre-tokenizers);
- it is compared with Hugging Face on every code point of Unicode (alone, inside a word,
  doubled); a text holding a character that differed is encoded by Hugging Face instead (per
  text), and a differing ASCII character rules the engine out;
- with that routing, it must give Hugging Face's ids on every edge-case probe (accents, CJK,
  control characters, long words, special tokens, odd whitespace), else it is not used for
  this tokenizer at all.

The check takes ~3 s on 2 cores; its verdict is kept in the crossenc cache, keyed by the
tokenizer and the versions of both libraries, so it runs once per machine.

Without the package, or for tokenizers it does not qualify for, every text goes through
``tokenizers`` as before; ``CROSSENC_FAST_TOKENIZER=0`` turns it off. Either way the output is
one flat int32 id array and the per-text lengths, so the pair assembly never sees per-text lists.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import threading
from collections.abc import Sequence

import numpy as np

from crossenc.paths import atomic_write, cache_dir

ENCODE_CHUNK = 2048  # texts per Hugging Face call: bounds its per-text Python objects
FAST_ENGINE = "nanotoken"
FAST_EXTRA = "fast"
CHECK_VERSION = 1  # bump when the check changes: verdicts cached under an older one are ignored
BLOCK = 256  # code points per probe text; a differing block is then probed one code point at a time

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

    ``bad_chars``: code points whose probe differed; a text holding one is encoded by
    ``fallback``. ``parallel``: let the engine use its thread pool.
    """

    engine = FAST_ENGINE

    def __init__(self, engine, fallback: HubTextEncoder, bad_chars: frozenset[int] = frozenset(),
                 parallel: bool = True) -> None:
        self.fast = engine
        self.fallback = fallback
        self.bad_chars = bad_chars
        self.parallel = parallel
        self._routed = _char_pattern(bad_chars)

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


def _char_pattern(codes: frozenset[int]) -> re.Pattern | None:
    if not codes:
        return None
    ranges, ordered = [], sorted(codes)
    start = previous = ordered[0]
    for code in ordered[1:] + [-1]:
        if code != previous + 1:  # close the run start..previous
            ranges.append(re.escape(chr(start)) + (f"-{re.escape(chr(previous))}" if previous > start else ""))
            start = code
        previous = code
    return re.compile(f"[{''.join(ranges)}]")


def character_probes(codes: Sequence[int]) -> list[str]:
    """One probe text per code point: alone, inside a word, doubled."""
    return [f"{chr(code)} a{chr(code)}b {chr(code) * 2}" for code in codes]


def _differ(encoder, fallback: HubTextEncoder, texts: list[str]) -> list[bool]:
    fast_ids, fast_lengths = encoder.encode(texts)
    slow_ids, slow_lengths = fallback.encode(texts)
    fast_ends, slow_ends = np.cumsum(fast_lengths), np.cumsum(slow_lengths)
    return [
        bool(fast_lengths[i] != slow_lengths[i])
        or not np.array_equal(fast_ids[fast_ends[i] - fast_lengths[i] : fast_ends[i]],
                              slow_ids[slow_ends[i] - slow_lengths[i] : slow_ends[i]])
        for i in range(len(texts))
    ]


def self_check(engine, fallback: HubTextEncoder) -> tuple[bool, frozenset[int], str]:
    """(usable, bad code points, why not): the engine against Hugging Face on every code point, then,
    with texts holding a code point that differed routed to Hugging Face, on the edge cases."""
    unrouted = FastTextEncoder(engine, fallback)
    codes = [code for code in range(0x110000) if not 0xD800 <= code < 0xE000]  # no surrogates in str
    blocks = [codes[start : start + BLOCK] for start in range(0, len(codes), BLOCK)]
    block_texts = [" ".join(character_probes(block)) for block in blocks]
    bad: set[int] = set()
    for block, wrong in zip(blocks, _differ(unrouted, fallback, block_texts)):
        if wrong:
            single = [code for code, differs in zip(block, _differ(unrouted, fallback, character_probes(block)))
                      if differs]
            bad.update(single or block)  # a block wrong only as a whole: route all of it
    bad_chars = frozenset(bad)
    if any(code < 0x80 for code in bad_chars):
        return False, bad_chars, f"differs from tokenizers on ASCII {chr(min(bad_chars))!r}"
    edge = _differ(FastTextEncoder(engine, fallback, bad_chars), fallback, list(EDGE_PROBES))
    if any(edge):
        return False, bad_chars, f"differs from tokenizers on {EDGE_PROBES[edge.index(True)]!r}"
    return True, bad_chars, ""


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
    per tokenizer (its serialized JSON) and process, its verdict kept in the crossenc cache.
    """
    fallback = HubTextEncoder(backend)
    if not fast or not fast_tokenizer_enabled() or _engine_module() is None:
        return fallback
    engine, usable, bad_chars, _ = _checked_engine(backend, fallback)
    if not usable:
        return fallback
    return FastTextEncoder(engine, fallback, bad_chars, parallel=parallel)


def _checked_engine(backend, fallback: HubTextEncoder) -> tuple[object, bool, frozenset[int], str]:
    serialized = backend.to_str()
    key = hashlib.sha256(serialized.encode()).hexdigest()
    with _CHECK_LOCK:
        if key not in _CHECKED:
            engine = load_engine(backend)
            if engine is None:
                _CHECKED[key] = (None, False, frozenset(), f"{FAST_ENGINE} does not implement this tokenizer")
            else:
                _CHECKED[key] = (engine, *_verdict(engine, fallback, key))
        return _CHECKED[key]


def _verdict(engine, fallback: HubTextEncoder, key: str) -> tuple[bool, frozenset[int], str]:
    """:func:`self_check`'s verdict, from the crossenc cache when this engine and tokenizer were checked before."""
    genuine = type(engine).__module__.startswith(FAST_ENGINE)  # a stand-in (tests) is checked every time
    path = _verdict_path(key) if genuine else None
    if path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text())
            return bool(saved["usable"]), frozenset(saved["bad_chars"]), str(saved["why"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: check again
    usable, bad_chars, why = self_check(engine, fallback)
    if path is not None:
        try:
            verdict = {"usable": usable, "bad_chars": sorted(bad_chars), "why": why}
            atomic_write(path, json.dumps(verdict).encode())  # a reader sees the old verdict or the whole new one
        except OSError:
            pass  # a read-only cache costs a check per process, nothing else
    return usable, bad_chars, why


def _verdict_path(key: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        versions = f"{version(FAST_ENGINE)}-{version('tokenizers')}"
    except PackageNotFoundError:
        return None
    digest = hashlib.sha256(f"{key}-{versions}-{CHECK_VERSION}".encode()).hexdigest()[:32]
    return cache_dir() / "fast-tokenizer" / f"{digest}.json"


def why_not_fast(backend) -> str:
    """Why ``backend``'s texts are not encoded by the compiled engine ('' when they are)."""
    if not fast_tokenizer_enabled():
        return "turned off by CROSSENC_FAST_TOKENIZER"
    if _engine_module() is None:
        return f"{FAST_ENGINE} is not installed (pip install 'crossenc[{FAST_EXTRA}]')"
    return _checked_engine(backend, HubTextEncoder(backend))[3]
