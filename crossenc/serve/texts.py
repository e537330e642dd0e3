"""Per-request text options with the model's tokenizer: token caps, left truncation, overlong checks."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence

import numpy as np

from crossenc.pair_encoding import EncodedPairs, PairEncoder
from crossenc.tokenization import PromptedPairEncoder

Pair = tuple[str, str]


class PairTooLong(ValueError):
    """A pair exceeds the model's max_length and the request asked not to truncate (TEI ``truncate=false``)."""

    def __init__(self, index: int, tokens: int, max_length: int, field: str) -> None:
        super().__init__(
            f"{field}[{index}]: the (query, text) pair has {tokens} tokens, more than the model's "
            f"max_length of {max_length}; shorten it or send truncate=true"
        )


class TextTools:
    """Counting and cutting texts with a private, non-truncating copy of the encoder's tokenizer.

    The copy is never reconfigured after it is made, so threads may use it at once.
    """

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self._plain = copy.deepcopy(encoder.tokenizer.backend_tokenizer)
        self._plain.no_truncation()
        self._plain.no_padding()
        self._left: tuple[int, PromptedPairEncoder] | None = None
        self._left_lock = threading.Lock()

    def cap(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut after its first ``max_tokens`` tokens (original characters kept)."""
        encodings = self._plain.encode_batch(list(texts), add_special_tokens=False)
        return [
            text if len(encoding.ids) <= max_tokens else text[: encoding.offsets[max_tokens - 1][1]]
            for text, encoding in zip(texts, encodings)
        ]

    def left_tokenizer(self) -> PromptedPairEncoder:
        """``encoder.tokenize_pairs`` but truncating pairs from the left (TEI ``truncation_direction``)."""
        max_length = self.encoder.max_length
        with self._left_lock:
            if self._left is None or self._left[0] != max_length:
                tokenizer = copy.deepcopy(self.encoder.tokenizer)
                tokenizer.truncation_side = "left"
                prompt = self.encoder.pair_tokenizer().query_prompt
                encoder = PairEncoder(tokenizer, max_length)
                self._left = (max_length, PromptedPairEncoder(encoder, self.encoder.uses_token_type_ids, prompt))
            return self._left[1]

    def refuse_overlong(self, field: str):
        """A scheduler ``check`` raising :class:`PairTooLong` for the first pair the tokenizer truncated."""

        def check(pairs: Sequence[Pair], encoded: EncodedPairs) -> None:
            max_length = self.encoder.max_length
            # Only pairs that came out at the limit can have been cut: recount just those.
            candidates = np.flatnonzero(encoded.lengths >= max_length)
            if len(candidates) == 0:
                return
            full = self.pair_lengths([pairs[index] for index in candidates])
            for index, tokens in zip(candidates.tolist(), full.tolist()):
                if tokens > max_length:
                    raise PairTooLong(index, tokens, max_length, field)

        return check

    def pair_lengths(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Untruncated tokens of each pair as ``predict`` would build it (default prompt, special tokens)."""
        prompt = self.encoder.pair_tokenizer().query_prompt or ""
        texts = [prompt + query for query, _ in pairs] + [document for _, document in pairs]
        counts = np.array([len(encoding.ids) for encoding in self._plain.encode_batch(texts, add_special_tokens=False)])
        specials = self.encoder.tokenizer.num_special_tokens_to_add(pair=True)
        return counts[: len(pairs)] + counts[len(pairs) :] + specials
