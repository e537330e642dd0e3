"""One tokenization setup per checkpoint, and the picklable tokenizer ``CrossEncoder.pair_tokenizer()`` returns.

:func:`tokenizer_setup` is what every caller that turns pairs into a model's token ids starts from
(tokenizer, usable max length, type-id flag, pad id, pair encoder), so they all cut and pad alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossenc.chat_template import ChatTemplateEncoder, has_chat_template
from crossenc.inputs import check_positive, normalize_pairs
from crossenc.model_source import ModelSource, position_limit, usable_max_length
from crossenc.pair_encoding import EncodedPairs, PairEncoder
from crossenc.st_compat import SavedSettings, read_saved_settings

Pair = tuple[str, str]


def check_room_for_specials(tokenizer, max_length: int) -> int:
    """Below a pair's special tokens, tokenizers skip truncation altogether: refuse such a length."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    if max_length < specials:
        raise ValueError(
            f"max_length={max_length} leaves no room for a pair's {specials} special tokens; "
            f"the tokenizer would then not truncate at all. Use max_length > {specials} "
            f"(each pair keeps max_length - {specials} tokens of text)"
        )
    return max_length


def check_max_length(tokenizer, config, max_length: int | None) -> int:
    """``max_length`` checked against the model's positions, or the usable default (tokenizer, positions) for None."""
    if max_length is None:
        return check_room_for_specials(tokenizer, usable_max_length(tokenizer, config))
    limit = position_limit(config)
    max_length = check_room_for_specials(tokenizer, check_positive("max_length", max_length))
    if limit is not None and max_length > limit:
        raise ValueError(
            f"max_length={max_length} exceeds the model's {limit} position embeddings; use max_length <= {limit}"
        )
    return max_length


@dataclass(frozen=True)
class TokenizerSetup:
    """How one checkpoint's pairs become token ids; ``tokenizer.model_max_length`` is ``max_length``."""

    tokenizer: Any  # a fast Hugging Face tokenizer
    max_length: int
    uses_token_type_ids: bool
    pad_token_id: int
    encoder: PairEncoder  # each distinct text once ("split"), where the tokenizer allows

    def with_max_length(self, max_length: int) -> TokenizerSetup:
        """The same tokenizer cutting at ``max_length`` (checked against the special tokens)."""
        self.tokenizer.model_max_length = check_room_for_specials(self.tokenizer, max_length)
        return dataclasses.replace(self, max_length=max_length, encoder=PairEncoder(self.tokenizer, max_length))

    def pair_encoder(self, split: bool = True) -> PairEncoder:
        """The pair encoder; ``split=False``: pair by pair, as Hugging Face's own call (for comparisons)."""
        return self.encoder if split else PairEncoder(self.tokenizer, self.max_length, split=False)

    def encoder_for(self, prompt: str | None = None) -> PairEncoder | ChatTemplateEncoder:
        """What encodes pairs under ``prompt``: the tokenizer's chat template (the prompt as its system message)
        where it has one, else the pair encoder (the prompt then goes before each query: :meth:`prompted`)."""
        if has_chat_template(self.tokenizer):
            return ChatTemplateEncoder(self.tokenizer, self.max_length, prompt)
        return self.encoder

    def prompted(self, pairs: list[Pair], prompt: str | None) -> list[Pair]:
        """``pairs`` with ``prompt`` before each query, unless a chat template carries it instead."""
        if not prompt or has_chat_template(self.tokenizer):
            return pairs
        return [(prompt + query, document) for query, document in pairs]

    def encode(self, pairs: Any) -> EncodedPairs:
        """Token ids of ``pairs`` as given (no prompt), through the pair encoder."""
        return self.encoder.encode(pairs, self.uses_token_type_ids)


def tokenizer_setup(source: ModelSource, config: Any = None, max_length: int | None = None) -> TokenizerSetup:
    """The tokenization of ``source``: its fast tokenizer (``source.tokenizer_kwargs`` applied), ``max_length``
    checked (None: the usable default), whether it emits token type ids, its pad id (0 if it has none)."""
    tokenizer = source.load_tokenizer()
    max_length = check_max_length(tokenizer, source.load_config() if config is None else config, max_length)
    tokenizer.model_max_length = max_length
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TokenizerSetup(tokenizer, max_length, "token_type_ids" in tokenizer.model_input_names, pad_token_id,
                          PairEncoder(tokenizer, max_length))


def checkpoint_source(
    folder: Path, like: ModelSource | None = None, model_kwargs: dict[str, Any] | None = None
) -> tuple[ModelSource, SavedSettings]:
    """The ModelSource ``CrossEncoder(folder, ...)`` reads (``like``'s trust and config/tokenizer kwargs, the
    ``max_seq_length`` sentence-transformers saved there), and those saved settings."""
    saved = read_saved_settings(folder)
    tokenizer_kwargs = dict(like.tokenizer_kwargs) if like else {}
    if saved.max_seq_length is not None:
        tokenizer_kwargs.setdefault("model_max_length", saved.max_seq_length)
    source = ModelSource(
        path=folder, name=str(folder), trust_remote_code=bool(like and like.trust_remote_code),
        allow_pickle=bool(like and like.allow_pickle), config_kwargs=dict(like.config_kwargs) if like else {},
        tokenizer_kwargs=tokenizer_kwargs, model_kwargs=dict(model_kwargs or {}),
    )
    return source, saved


@dataclass(frozen=True)
class PromptedPairEncoder:
    """``tokenize(pairs)`` gives the ids ``CrossEncoder.predict(pairs)`` would score (prompt, max_length).

    On a GPU the host's tokenizer can be the bottleneck (an H100 scored ~96,000 pre-tokenized Debian
    pairs/s against ~35,000 from text with ``tokenizers`` alone), so a pipeline can tokenize in its own
    worker processes and hand the :class:`~crossenc.pair_encoding.EncodedPairs` to
    ``CrossEncoder.predict_tokenized``.
    A ``CrossEncoder`` holds locks and a model and cannot be pickled; this can.
    """

    encoder: PairEncoder | ChatTemplateEncoder
    use_token_type_ids: bool
    query_prompt: str | None = None

    def __call__(self, pairs: Any) -> EncodedPairs:
        checked, _ = normalize_pairs(pairs)
        if self.query_prompt:
            checked = [(self.query_prompt + query, document) for query, document in checked]
        return self.encoder.encode(checked, self.use_token_type_ids)
