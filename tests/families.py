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
# the per-family bench (scripts/bench_families.py): MiniLM-L6's shape, real-length inputs
MID_SIZE = {"hidden": 384, "layers": 6, "heads": 12, "intermediate": 1536, "positions": 512}

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


class TinyVocabulary:
    """The few hundred words of ``tests.conftest.WORDS``: small embeddings for fast tests."""

    def wordpiece(self, specials: list[str]) -> list[str]:
        return _wordpiece_vocab(specials)

    def bpe(self, specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
        return _bpe_vocab(specials)

    def unigram(self, specials: list[str]) -> list[tuple[str, float]]:
        return _unigram_vocab(specials)


class TrainedVocabulary:
    """Real-sized vocabularies trained on ``texts`` by ``tokenizers``' trainers, so text tokenizes into
    realistic token counts (the tiny vocabularies split unknown words into characters)."""

    def __init__(self, texts: list[str], size: int = 30522) -> None:
        self.texts, self.size = texts, size
        self._trained: dict[tuple[str, ...], dict] = {}  # BERT, ELECTRA, DistilBERT and MPNet share one WordPiece

    def _train(self, model, trainer, pre_tokenizer, normalizer=None) -> dict:
        """The trained model's JSON, once per (model kind, special tokens)."""
        import json

        key = (type(model).__name__, *(token.content for token in trainer.special_tokens))
        if key in self._trained:
            return self._trained[key]

        from tokenizers import Tokenizer

        backend = Tokenizer(model)
        backend.pre_tokenizer = pre_tokenizer
        if normalizer is not None:
            backend.normalizer = normalizer
        backend.train_from_iterator(self.texts, trainer=trainer)
        return self._trained.setdefault(key, json.loads(backend.to_str())["model"])

    def wordpiece(self, specials: list[str]) -> list[str]:
        from tokenizers import models, normalizers, pre_tokenizers, trainers

        trainer = trainers.WordPieceTrainer(vocab_size=self.size, special_tokens=specials, show_progress=False)
        trained = self._train(models.WordPiece(unk_token="[UNK]"), trainer, pre_tokenizers.BertPreTokenizer(),
                              normalizers.BertNormalizer(lowercase=True))
        return [token for token, _ in sorted(trained["vocab"].items(), key=lambda item: item[1])]

    def bpe(self, specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
        from tokenizers import models, pre_tokenizers, trainers

        trainer = trainers.BpeTrainer(vocab_size=self.size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        trained = self._train(models.BPE(), trainer, pre_tokenizers.ByteLevel(add_prefix_space=False))
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
        return trained["vocab"], merges

    def unigram(self, specials: list[str]) -> list[tuple[str, float]]:
        from tokenizers import models, pre_tokenizers, trainers

        unknown = next(token for token in specials if "unk" in token.lower())
        trainer = trainers.UnigramTrainer(vocab_size=self.size, special_tokens=specials, unk_token=unknown,
                                          show_progress=False)
        trained = self._train(models.Unigram(), trainer, pre_tokenizers.Metaspace())
        return [(piece, score) for piece, score in trained["vocab"]]


def _tokenizer(family: str, vocabulary=None, positions: int = SIZE["positions"]):
    import transformers as tf

    vocabulary = vocabulary or TinyVocabulary()

    if family in ("bert", "electra", "mpnet", "distilbert"):
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        cls = {"bert": tf.BertTokenizerFast, "electra": tf.ElectraTokenizerFast, "mpnet": tf.MPNetTokenizerFast,
               "distilbert": tf.DistilBertTokenizerFast}[family]
        vocab = {token: index for index, token in enumerate(vocabulary.wordpiece(specials))}
        if family == "mpnet":
            vocab = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + list(vocab))}
            return cls(vocab=vocab, do_lower_case=True, model_max_length=positions - 2)
        return cls(vocab=vocab, do_lower_case=True, model_max_length=positions)
    if family == "roberta":
        vocab, merges = vocabulary.bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        return tf.RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=positions - 2)
    if family == "modernbert":
        vocab, merges = vocabulary.bpe(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
        tokenizer = tf.PreTrainedTokenizerFast(
            tokenizer_object=_bpe_backend(vocab, merges, "[CLS]", "[SEP]"), unk_token="[UNK]", cls_token="[CLS]",
            sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", model_max_length=positions,
            model_input_names=["input_ids", "attention_mask"],
        )
        return tokenizer
    if family == "qwen3":
        vocab, merges = vocabulary.bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        return tf.Qwen2TokenizerFast(vocab=vocab, merges=merges, pad_token="<|endoftext|>",
                                     model_max_length=positions)
    if family in ("xlm-roberta", "albert", "deberta-v2"):
        if family == "xlm-roberta":
            return tf.XLMRobertaTokenizerFast(vocab=vocabulary.unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"]),
                                              model_max_length=positions - 2)
        if family == "albert":
            return tf.AlbertTokenizerFast(vocab=vocabulary.unigram(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]),
                                          model_max_length=positions)
        return tf.DebertaV2TokenizerFast(vocab=vocabulary.unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]),
                                         model_max_length=positions)
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


def _config(family: str, tokenizer, num_labels: int, size: dict[str, int] = SIZE):
    import transformers as tf

    h, n, heads, inter, pos = size["hidden"], size["layers"], size["heads"], size["intermediate"], size["positions"]
    tiny = size["hidden"] <= SIZE["hidden"]
    init = 0.2 if tiny else 0.02  # tiny: spread the scores apart; mid-size: the families' own default
    common = dict(vocab_size=len(tokenizer), num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)
    bert_like = dict(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, intermediate_size=inter,
                     max_position_embeddings=pos, initializer_range=init, **common)
    if family == "bert":
        return tf.BertConfig(type_vocab_size=2, **bert_like)
    if family == "electra":
        return tf.ElectraConfig(embedding_size=16 if tiny else h, type_vocab_size=2, **bert_like)
    if family == "albert":
        return tf.AlbertConfig(embedding_size=16 if tiny else 128, type_vocab_size=2, **bert_like)
    if family in ("roberta", "xlm-roberta"):
        cls = tf.RobertaConfig if family == "roberta" else tf.XLMRobertaConfig
        return cls(type_vocab_size=1, **{**bert_like, "max_position_embeddings": pos + 2})
    if family == "mpnet":
        return tf.MPNetConfig(**{**bert_like, "max_position_embeddings": pos + 2})
    if family == "deberta-v2":
        return tf.DebertaV2Config(type_vocab_size=0, relative_attention=True, position_buckets=16 if tiny else 256,
                                  max_relative_positions=-1, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                  **bert_like)
    if family == "distilbert":
        return tf.DistilBertConfig(dim=h, n_layers=n, n_heads=heads, hidden_dim=inter, max_position_embeddings=pos,
                                   initializer_range=init, **common)
    if family == "modernbert":
        return tf.ModernBertConfig(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                                   intermediate_size=inter, max_position_embeddings=pos,
                                   global_attn_every_n_layers=2 if tiny else 3, local_attention=16 if tiny else 128,
                                   initializer_range=init, cls_token_id=tokenizer.cls_token_id,
                                   sep_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id,
                                   eos_token_id=tokenizer.sep_token_id, **common)
    if family == "qwen3":
        return tf.Qwen3Config(hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, num_key_value_heads=1 if tiny else 4,
                              head_dim=h // heads, intermediate_size=inter, max_position_embeddings=pos,
                              initializer_range=init, tie_word_embeddings=False, **common)
    raise ValueError(family)


def build_family_model(folder: Path, family: str, num_labels: int = 1, seed: int = 0,
                       size: dict[str, int] = SIZE, vocabulary=None) -> Path:
    """Write a random ``family`` cross-encoder (weights, config, tokenizer) to ``folder``: tiny by default;
    ``size`` (e.g. :data:`MID_SIZE`) and ``vocabulary`` (:class:`TrainedVocabulary`) for the per-family bench."""
    import torch
    from transformers import AutoModelForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(family, vocabulary, size["positions"])
    config = _config(family, tokenizer, num_labels, size)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
