"""Tiny random ``*ForSequenceClassification`` checkpoints of each reranker family, built locally.

Each family gets a tokenizer of its own kind (WordPiece; byte-level BPE with RoBERTa's specials;
Unigram/SentencePiece-style for XLM-R, ALBERT and DeBERTa-v2; a decoder's BPE with a pad token),
so tokenization, token type ids and padding sides are exercised as the real checkpoints have them.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import WORDS

LETTERS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?-'")
SIZE = {"hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "positions": 128}

# family -> the popular rerankers built on it (README support table)
CHECKPOINTS = {
    "bert": "cross-encoder/ms-marco-MiniLM-L6-v2, TinyBERT rerankers",
    "electra": "cross-encoder/ms-marco-electra-base",
    "distilbert": "distilbert-based ms-marco rerankers",
    "albert": "ALBERT rerankers",
    "roberta": "cross-encoder/stsb-roberta-base, distilroberta rerankers",
    "xlm-roberta": "BAAI/bge-reranker-base/large/v2-m3, jina-reranker-v2 (XLM-R based)",
    "mpnet": "MPNet rerankers",
    "deberta-v2": "mixedbread-ai/mxbai-rerank-*-v1, DeBERTa-v3 rerankers",
    "modernbert": "Alibaba-NLP/gte-reranker-modernbert-base, ettin rerankers",
    "qwen3": "Qwen3-Reranker seq-cls conversions (tomaarsen/Qwen3-Reranker-0.6B-seq-cls)",
}
FAMILIES = tuple(CHECKPOINTS)


def _wordpiece_vocab(specials: list[str]) -> list[str]:
    tokens = specials + WORDS + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + LETTERS
    return list(dict.fromkeys(tokens))  # ids must be dense: a repeated token would leave a hole


def _bpe_vocab(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary: every byte symbol, then merges building each word."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    vocab = {token: index for index, token in enumerate(specials)}
    for symbol in sorted(alphabet):
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        piece = "Ġ" + word
        current = piece[0]
        for char in piece[1:]:
            merged = current + char
            if merged not in vocab:
                merges.append((current, char))
                vocab[merged] = len(vocab)
            current = merged
    return vocab, merges


def _unigram_vocab(specials: list[str]) -> list[tuple[str, float]]:
    pieces = [(token, 0.0) for token in specials]
    pieces += [("▁" + word, -2.0) for word in WORDS] + [("▁", -3.0)]
    pieces += [(char, -5.0) for char in LETTERS]
    return list(dict(pieces).items())


def _tokenizer(family: str):
    import transformers as tf

    if family in ("bert", "electra", "mpnet", "distilbert"):
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        cls = {"bert": tf.BertTokenizerFast, "electra": tf.ElectraTokenizerFast, "mpnet": tf.MPNetTokenizerFast,
               "distilbert": tf.DistilBertTokenizerFast}[family]
        vocab = {token: index for index, token in enumerate(_wordpiece_vocab(specials))}
        if family == "mpnet":
            vocab = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + list(vocab))}
            return cls(vocab=vocab, do_lower_case=True, model_max_length=SIZE["positions"] - 2)
        return cls(vocab=vocab, do_lower_case=True, model_max_length=SIZE["positions"])
    if family == "roberta":
        vocab, merges = _bpe_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return tf.RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=SIZE["positions"] - 2)
    if family == "modernbert":
        vocab, merges = _bpe_vocab(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
        tokenizer = tf.PreTrainedTokenizerFast(
            tokenizer_object=_bpe_backend(vocab, merges, "[CLS]", "[SEP]"), unk_token="[UNK]", cls_token="[CLS]",
            sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", model_max_length=SIZE["positions"],
            model_input_names=["input_ids", "attention_mask"],
        )
        return tokenizer
    if family == "qwen3":
        vocab, merges = _bpe_vocab(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        return tf.Qwen2TokenizerFast(vocab=vocab, merges=merges, pad_token="<|endoftext|>",
                                     model_max_length=SIZE["positions"])
    if family in ("xlm-roberta", "albert", "deberta-v2"):
        if family == "xlm-roberta":
            return tf.XLMRobertaTokenizerFast(vocab=_unigram_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]),
                                              model_max_length=SIZE["positions"] - 2)
        if family == "albert":
            return tf.AlbertTokenizerFast(vocab=_unigram_vocab(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]),
                                          model_max_length=SIZE["positions"])
        return tf.DebertaV2TokenizerFast(vocab=_unigram_vocab(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]),
                                         model_max_length=SIZE["positions"])
    raise ValueError(family)


def _bpe_backend(vocab: dict[str, int], merges: list[tuple[str, str]], cls: str, sep: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B {sep}",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    return backend


def _config(family: str, tokenizer, num_labels: int):
    import transformers as tf

    h, n, heads, inter, pos = SIZE["hidden"], SIZE["layers"], SIZE["heads"], SIZE["intermediate"], SIZE["positions"]
    common = dict(vocab_size=len(tokenizer), num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)
    bert_like = dict(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, intermediate_size=inter,
                     max_position_embeddings=pos, initializer_range=0.2, **common)
    if family == "bert":
        return tf.BertConfig(type_vocab_size=2, **bert_like)
    if family == "electra":
        return tf.ElectraConfig(embedding_size=16, type_vocab_size=2, **bert_like)
    if family == "albert":
        return tf.AlbertConfig(embedding_size=16, type_vocab_size=2, **bert_like)
    if family in ("roberta", "xlm-roberta"):
        cls = tf.RobertaConfig if family == "roberta" else tf.XLMRobertaConfig
        return cls(type_vocab_size=1, **{**bert_like, "max_position_embeddings": pos + 2})
    if family == "mpnet":
        return tf.MPNetConfig(**{**bert_like, "max_position_embeddings": pos + 2})
    if family == "deberta-v2":
        return tf.DebertaV2Config(type_vocab_size=0, relative_attention=True, position_buckets=16,
                                  max_relative_positions=-1, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                  **bert_like)
    if family == "distilbert":
        return tf.DistilBertConfig(dim=h, n_layers=n, n_heads=heads, hidden_dim=inter, max_position_embeddings=pos,
                                   initializer_range=0.2, **common)
    if family == "modernbert":
        return tf.ModernBertConfig(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                                   intermediate_size=inter, max_position_embeddings=pos, global_attn_every_n_layers=2,
                                   local_attention=16, initializer_range=0.2, cls_token_id=tokenizer.cls_token_id,
                                   sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id,
                                   eos_token_id=tokenizer.sep_token_id, **common)
    if family == "qwen3":
        return tf.Qwen3Config(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, num_key_value_heads=1,
                              head_dim=16, intermediate_size=inter, max_position_embeddings=pos,
                              initializer_range=0.2, tie_word_embeddings=False, **common)
    raise ValueError(family)


def build_family_model(folder: Path, family: str, num_labels: int = 1, seed: int = 0) -> Path:
    """Write a tiny random ``family`` cross-encoder (weights, config, tokenizer) to ``folder``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(family)
    config = _config(family, tokenizer, num_labels)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
