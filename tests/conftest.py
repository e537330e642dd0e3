"""Shared fixtures: tiny random BERT cross-encoders built locally (no network)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU interpreter in tests; must precede any triton import

WORDS = (
    "the a an of to in is for on with package library tool data server client network file system python "
    "module game debian linux kernel driver audio video image text editor compiler runtime test shell web "
    "database query document search rank fast slow small large open source free graphics font theme"
).split()


def build_tiny_model(folder: Path, num_labels: int = 1, seed: int = 0, model_type: str = "bert") -> Path:
    """Write a 2-layer random cross-encoder checkpoint with its own vocab to ``folder``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab += list("abcdefghijklmnopqrstuvwxyz0123456789.,!?-'")
    vocab = list(dict.fromkeys(vocab))  # dense ids: a repeated token would leave an id past the embeddings
    # transformers 5 ignores vocab_file=: the vocabulary itself must be passed, or every word is [UNK]
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True,
                                  model_max_length=128)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        type_vocab_size=2,
        num_labels=num_labels,
        initializer_range=0.2,
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_pairs(count: int, seed: int = 0, max_words: int = 60) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [
        (
            " ".join(rng.choices(WORDS, k=rng.randint(1, 6))),
            " ".join(rng.choices(WORDS, k=rng.randint(0, max_words))),
        )
        for _ in range(count)
    ]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_3labels(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny3") / "model", num_labels=3, seed=1)


@pytest.fixture(scope="session")
def pairs() -> list[tuple[str, str]]:
    return random_pairs(50)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model):
    from crossenc import CrossEncoder

    return CrossEncoder(str(tiny_model), device="cpu")
