"""A picklable tokenizer of one CrossEncoder: tokenize away from the scoring process.

On a GPU the host's tokenizer is the bottleneck (an H100 scored ~96,000 pre-tokenized Debian
pairs/s against ~35,000 from text), so a pipeline can tokenize in its own worker processes and
hand the :class:`~crossenc.pair_encoding.EncodedPairs` to ``CrossEncoder.predict_tokenized``.
A ``CrossEncoder`` holds locks and a model and cannot be pickled; this can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossenc.inputs import normalize_pairs
from crossenc.pair_encoding import EncodedPairs, PairEncoder


@dataclass(frozen=True)
class PairTokenizer:
    """``tokenizer(pairs)`` gives the ids ``CrossEncoder.predict(pairs)`` would score (prompt, max_length)."""

    encoder: PairEncoder
    use_token_type_ids: bool
    query_prompt: str | None = None

    def __call__(self, pairs: Any) -> EncodedPairs:
        checked, _ = normalize_pairs(pairs)
        if self.query_prompt:
            checked = [(self.query_prompt + query, document) for query, document in checked]
        return self.encoder.encode(checked, self.use_token_type_ids)
