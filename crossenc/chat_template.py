"""Pairs rendered through the tokenizer's chat template, as sentence-transformers 6 renders them.

When a tokenizer has a chat template (``processor_kwargs={"chat_template": ...}`` or a template shipped
with the checkpoint, as LLM rerankers such as Qwen3-Reranker conversions do), sentence-transformers
maps each pair to a ``query`` and a ``document`` message, a prompt to a leading ``system`` message,
renders and tokenizes the conversation as one sequence, and writes the template's tail back over
rows that truncation cut (the tail is where last-token rerankers read). This module does the same,
so the ids equal its ``preprocess`` output, and refuses a template that drops either role.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from crossenc.pair_encoding import EncodedPairs, running_offsets

# sentence-transformers' probes: a pair whose query or document varies must render differently.
PAIR_ROLE_PROBES = (("alpha", "bravo"), ("charlie", "bravo"), ("alpha", "foxtrot"))
PAIR_ROLES = ("query", "document")
_PROBED: dict[tuple[str, str, str], str | None] = {}  # (template, format, model) -> why it cannot carry a pair
STRUCTURED_PATTERNS = ("content[0]", ".type", "'type'", '"type"', "item.type", "message.content[")


def has_chat_template(tokenizer) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def message_format(template: Any) -> str:
    """``structured`` (content as typed parts) when the template reads parts, else ``flat``."""
    if not isinstance(template, str) or not template:
        return "structured"
    return "structured" if any(pattern in template for pattern in STRUCTURED_PATTERNS) else "flat"


class ChatTemplateEncoder:
    """Encode pairs through ``tokenizer``'s chat template (mode ``chat``), a ``system`` message first when
    ``system_prompt`` is set. Raises ValueError when the template cannot carry a query/document pair."""

    mode = "chat"

    def __init__(self, tokenizer, max_length: int, system_prompt: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.system_prompt = system_prompt or None
        self.format = message_format(tokenizer.chat_template)
        self._suffixes: dict[str, list[int]] = {}

    def _message(self, role: str, text: str) -> dict[str, Any]:
        content = text if self.format == "flat" else [{"type": "text", "text": text}]
        return {"role": role, "content": content}

    def conversation(self, query: str, document: str) -> list[dict[str, Any]]:
        messages = [self._message("query", query), self._message("document", document)]
        return ([self._message("system", self.system_prompt)] if self.system_prompt else []) + messages

    def check_pair_roles(self) -> None:
        """sentence-transformers' probe: render pairs differing in one role; equal renders drop that role.
        The verdict is cached per template (every call builds an encoder; the probe costs three renders)."""
        template = self.tokenizer.chat_template
        name = getattr(self.tokenizer, "name_or_path", "")
        key = (template if isinstance(template, str) else repr(template), self.format, name)
        if key not in _PROBED:
            _PROBED[key] = self._pair_roles_failure()
        if _PROBED[key] is not None:
            raise ValueError(_PROBED[key])

    def _pair_roles_failure(self) -> str | None:
        try:
            base, *varied = [
                str(self.tokenizer.apply_chat_template(self.conversation(*pair)[-2:], tokenize=False))
                for pair in PAIR_ROLE_PROBES
            ]
        except Exception as error:  # a template that raises cannot carry the pair either
            failure = f"it raised {type(error).__name__}: {error}"
        else:
            dropped = [role for role, render in zip(PAIR_ROLES, varied) if render == base]
            failure = f"the {' and '.join(map(repr, dropped))} content does not reach the rendered prompt" if dropped else None
        if failure is None:
            return None
        name = getattr(self.tokenizer, "name_or_path", None) or "this model"
        example = (
            '    <Query>: {{ (messages | selectattr("role", "eq", "query") | first).content[0].text }}\n'
            '    <Document>: {{ (messages | selectattr("role", "eq", "document") | first).content[0].text }}\n'
            if self.format == "structured"
            else '    <Query>: {{ messages | selectattr("role", "eq", "query") | map(attribute="content") | first }}\n'
            '    <Document>: {{ messages | selectattr("role", "eq", "document") | map(attribute="content") | first }}\n'
        )
        return (  # sentence-transformers' wording
            f"The chat template of {name} cannot carry a 'query'/'document' pair ({failure}). Pair inputs "
            "are mapped to one message per role, so set a chat template that renders both roles, e.g.:\n"
            f"{example}"
            'via `processor_kwargs={"chat_template": ...}` when loading, `model.processor.chat_template = ...` '
            "afterwards, or a `chat_template.jinja` file alongside the model."
        )

    def encode(self, pairs: Sequence[tuple[str, str]], use_token_type_ids: bool) -> EncodedPairs:
        if not pairs:
            return EncodedPairs(np.zeros(0, np.int32), np.zeros(0, np.int8) if use_token_type_ids else None,
                                np.zeros(1, np.int64))
        self.check_pair_roles()
        conversations = [self.conversation(query, document) for query, document in pairs]
        rendered = self.tokenizer.apply_chat_template(
            conversations, tokenize=True, return_dict=True, truncation=True, max_length=self.max_length
        )
        rows = [list(row) for row in rendered["input_ids"]]
        for row in rows:
            if len(row) >= self.max_length:  # only such rows can have lost the template's tail
                suffix = self._suffix()
                keep = min(len(suffix), len(row))
                if keep:
                    row[-keep:] = suffix[-keep:]
        lengths = np.fromiter((len(row) for row in rows), np.int64, len(rows))
        ids = np.fromiter(itertools.chain.from_iterable(rows), np.int32, int(lengths.sum()))
        type_ids = None
        if use_token_type_ids:
            types = rendered.get("token_type_ids") or [[0] * len(row) for row in rows]
            type_ids = np.fromiter(itertools.chain.from_iterable(types), np.int8, int(lengths.sum()))
        return EncodedPairs(ids=ids, type_ids=type_ids, offsets=running_offsets(lengths))

    def _suffix(self) -> list[int]:
        """The template's tail: the longest common token suffix of two renders with different fillers."""
        if "tail" not in self._suffixes:
            first, second = (
                list(self.tokenizer.apply_chat_template(self.conversation(filler, filler), tokenize=True,
                                                        return_dict=True)["input_ids"])
                for filler in ("0", "1 2 3 4")
            )
            count = sum(1 for _ in itertools.takewhile(lambda pair: pair[0] == pair[1], zip(reversed(first), reversed(second))))
            self._suffixes["tail"] = first[len(first) - count:] if 0 < count < min(len(first), len(second)) else []
        return self._suffixes["tail"]
