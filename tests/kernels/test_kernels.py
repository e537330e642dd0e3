"""Packed (padding-free) forward: equal to the Hugging Face model in fp32, batch-invariant, on CPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from crossenc import CrossEncoder
from crossenc.backends import LoadRequest
from crossenc.hardware import has_cpu_bf16
from crossenc.kernels.attention import (
    ATTENTION,
    CUDA_ONLY,
    WINDOWED_ATTENTION,
    VarlenBatch,
    attention_reference,
    select_attention,
    select_windowed_attention,
)
from crossenc.kernels.packed_model import architecture_for, build_packed_encoder
from crossenc.backends.torch_backend.packed import load_packed
from crossenc.kernels.packing import pack_batch
from crossenc.model_source import ModelSource
from crossenc.predictor import TokenBatch

IDENTITY = torch.nn.Identity()
MIXED_LENGTHS = [7, 1, 13, 4, 13, 2, 31, 1, 64]
CPU_ATTENTION = sorted(set(ATTENTION) - CUDA_ONLY)
pytestmark = pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning")


def random_batch(lengths: list[int], pad_token_id: int, vocab_size: int, token_types: bool, seed: int = 0):
    """A padded TokenBatch with random ids (never the pad id) and a second segment of type 1."""
    rng = np.random.default_rng(seed)
    rows, width = len(lengths), max(lengths)
    input_ids = np.full((rows, width), pad_token_id, dtype=np.int64)
    mask = np.zeros((rows, width), dtype=np.int64)
    types = np.zeros((rows, width), dtype=np.int64)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = rng.integers(pad_token_id + 1, vocab_size, length)
        mask[row, :length] = 1
        types[row, length // 2 : length] = 1
    return TokenBatch(input_ids, mask, types if token_types else None, np.asarray(lengths, dtype=np.int64))


def hf_logits(model, batch: TokenBatch) -> torch.Tensor:
    # DistilBERT and ModernBERT take no token_type_ids at all
    types = {} if batch.token_type_ids is None else {"token_type_ids": torch.from_numpy(batch.token_type_ids)}
    with torch.inference_mode():
        return model(
            input_ids=torch.from_numpy(batch.input_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
            **types,
        ).logits


def packed_logits(encoder, batch: TokenBatch, pad_token_id: int) -> torch.Tensor:
    tokens = pack_batch(batch, encoder.position_style, pad_token_id)
    varlen = VarlenBatch(torch.from_numpy(tokens.cu_seqlens), tokens.max_seqlen, tokens.lengths)
    first_index = torch.from_numpy(tokens.cu_seqlens[:-1].astype(np.int64))
    with torch.inference_mode():
        return encoder(
            torch.from_numpy(tokens.input_ids),
            torch.from_numpy(tokens.token_type_ids),
            torch.from_numpy(tokens.position_ids),
            varlen,
            first_index,
        )


TOKEN_TYPES = {"bert", "electra"}  # families whose HF forward takes token_type_ids (with 2 types here)


def build_hf(model_type: str, num_labels: int = 1, seed: int = 0, **overrides):
    """Tiny random HF classifier of ``model_type`` (RoBERTa-style: pad id 1) and its packed encoder.

    ``overrides`` go to the config (ModernBERT: ``classifier_pooling``, ``num_hidden_layers``, ...).
    """
    import transformers

    torch.manual_seed(seed)
    if model_type == "distilbert":
        config = transformers.DistilBertConfig(
            vocab_size=99, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128,
            pad_token_id=0, num_labels=num_labels, initializer_range=0.2, **overrides,
        )  # fmt: skip
        model = transformers.DistilBertForSequenceClassification(config).eval()
        return model, build_packed_encoder(model), config.pad_token_id
    if model_type == "modernbert":
        # local_attention 16: a half-window of 8 tokens, far shorter than MIXED_LENGTHS' longest rows
        settings = dict(
            vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128, global_attn_every_n_layers=2, local_attention=16, pad_token_id=0,
            num_labels=num_labels, initializer_range=0.2,
        )  # fmt: skip
        config = transformers.ModernBertConfig(**{**settings, **overrides})
        model = transformers.ModernBertForSequenceClassification(config).eval()
        return model, build_packed_encoder(model), config.pad_token_id
    classes = {
        "bert": ("BertConfig", "BertForSequenceClassification"),
        "roberta": ("RobertaConfig", "RobertaForSequenceClassification"),
        "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaForSequenceClassification"),
        "electra": ("ElectraConfig", "ElectraForSequenceClassification"),
    }
    config_class, model_class = (getattr(transformers, name) for name in classes[model_type])
    roberta_like = model_type in ("roberta", "xlm-roberta")
    extra = {"embedding_size": 16} if model_type == "electra" else {}  # exercises embeddings_project
    config = config_class(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130 if roberta_like else 128,
        type_vocab_size=1 if roberta_like else 2,
        pad_token_id=1 if roberta_like else 0,
        num_labels=num_labels,
        initializer_range=0.2,
        hidden_act="gelu",
        **extra,
        **overrides,
    )
    model = model_class(config).eval()
    return model, build_packed_encoder(model), config.pad_token_id


@pytest.fixture(scope="module", params=["bert", "roberta", "xlm-roberta", "electra", "distilbert", "modernbert"])
def hf_and_packed(request):
    num_labels = 1 if request.param in ("bert", "distilbert") else 3
    return request.param, *build_hf(request.param, num_labels=num_labels)


def test_packed_matches_hf_fp32(hf_and_packed):
    model_type, model, encoder, pad = hf_and_packed
    batch = random_batch(MIXED_LENGTHS, pad, 99, token_types=model_type in TOKEN_TYPES)
    reference = hf_logits(model, batch)
    assert float(reference.std()) > 1e-3, "random model gives constant logits: the comparison would be vacuous"
    torch.testing.assert_close(packed_logits(encoder, batch, pad), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", CPU_ATTENTION)
def test_every_cpu_attention_matches_hf(attention):
    model, encoder, pad = build_hf("bert")
    encoder.ops = replace(encoder.ops, attention=ATTENTION[attention])
    batch = random_batch(MIXED_LENGTHS, pad, 99, token_types=True, seed=1)
    torch.testing.assert_close(packed_logits(encoder, batch, pad), hf_logits(model, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", CPU_ATTENTION)
def test_attention_matches_reference_on_odd_lengths(attention):
    torch.manual_seed(0)
    lengths = np.array([1, 3, 17, 1, 65, 2] + [5] * 20, dtype=np.int64)
    cu_seqlens = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    qkv = torch.randn(int(lengths.sum()), 3, 4, 16)  # q, k, v are strided views, as in the model
    q, k, v = qkv.unbind(1)
    varlen = VarlenBatch(cu_seqlens, int(lengths.max()), lengths)
    expected = attention_reference(q, k, v, VarlenBatch(cu_seqlens, int(lengths.max())), 0.25)
    got = ATTENTION[attention].function(q, k, v, varlen, 0.25)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_batch_invariance_and_length_one(hf_and_packed):
    model_type, _, encoder, pad = hf_and_packed
    batch = random_batch(MIXED_LENGTHS, pad, 99, token_types=model_type in TOKEN_TYPES, seed=2)
    together = packed_logits(encoder, batch, pad)
    for row, length in enumerate(MIXED_LENGTHS):
        rows = slice(row, row + 1)
        types = None if batch.token_type_ids is None else batch.token_type_ids[rows, :length]
        alone = TokenBatch(batch.input_ids[rows, :length], batch.attention_mask[rows, :length], types, batch.lengths[rows])
        torch.testing.assert_close(packed_logits(encoder, alone, pad)[0], together[row], atol=1e-6, rtol=0)


def test_positions_restart_per_sequence():
    batch = random_batch([3, 1, 2], pad_token_id=1, vocab_size=99, token_types=False)
    assert pack_batch(batch, "absolute", 1).position_ids.tolist() == [0, 1, 2, 0, 0, 1]
    packed = pack_batch(batch, "padding_offset", 1)
    assert packed.position_ids.tolist() == [2, 3, 4, 2, 2, 3]  # RoBERTa: padding_idx + 1 onward
    assert packed.cu_seqlens.tolist() == [0, 3, 4, 6] and packed.token_type_ids.tolist() == [0] * 6


def test_cross_encoder_packed_equals_sdpa(tiny_model, pairs):
    sdpa = CrossEncoder(str(tiny_model), variant="sdpa").predict(pairs, batch_size=7, activation_fn=IDENTITY)
    encoder = CrossEncoder(str(tiny_model), variant="packed")
    packed = encoder.predict(pairs, batch_size=7, activation_fn=IDENTITY)
    np.testing.assert_allclose(packed, sdpa, atol=1e-5, rtol=0)
    info = encoder.info()
    assert info["is_padded"] is False and info["precision"] == "fp32"
    assert info["details"]["attention"] == "sdpa-auto"


def test_load_packed_roberta_predictor(tmp_path):
    model, _, pad = build_hf("roberta", num_labels=2)
    model.save_pretrained(tmp_path)
    source = ModelSource(path=tmp_path, name=str(tmp_path))
    predictor = load_packed(LoadRequest(source, source.load_config(), "cpu", "packed", 128))
    batch = random_batch(MIXED_LENGTHS, pad, 99, token_types=False, seed=3)
    logits = predictor.predict_logits(batch)
    assert logits.dtype == np.float32 and logits.shape == (len(MIXED_LENGTHS), 2)
    np.testing.assert_allclose(logits, hf_logits(model, batch).numpy(), atol=1e-5, rtol=0)


def test_packed_fp16_refused_on_cpu(tiny_model):
    with pytest.raises(ValueError, match="packed-fp16.*CUDA"):
        CrossEncoder(str(tiny_model), variant="packed-fp16", device="cpu")


@pytest.mark.skipif(not has_cpu_bf16(), reason="CPU lacks AVX512_BF16/AMX")
def test_packed_bf16_close_on_cpu(tiny_model, pairs):
    reference = CrossEncoder(str(tiny_model), variant="packed").predict(pairs, activation_fn=IDENTITY)
    encoder = CrossEncoder(str(tiny_model), variant="packed-bf16")
    logits = encoder.predict(pairs, activation_fn=IDENTITY)
    assert encoder.info()["precision"] == "bf16"
    assert np.abs(logits - reference).max() < 5e-2


def test_unsupported_model_type_is_named(tiny_model, tmp_path):
    from transformers import AlbertConfig, AlbertForSequenceClassification, ModernBertConfig

    with pytest.raises(ValueError, match="'albert'"):
        architecture_for(AlbertConfig())
    scaled = ModernBertConfig()
    scaled.rope_parameters["sliding_attention"]["rope_type"] = "linear"  # the tables would differ from HF's
    with pytest.raises(ValueError, match="modernbert rotary.*sliding_attention layers use 'linear'.*variant='sdpa'"):
        architecture_for(scaled)
    config = AlbertConfig(vocab_size=200, embedding_size=16, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=64, num_labels=1)  # fmt: skip
    AlbertForSequenceClassification(config).save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_model / name).exists():
            (tmp_path / name).write_bytes((tiny_model / name).read_bytes())
    with pytest.raises(ValueError, match="model_type.*'albert'.*variant='sdpa'"):
        CrossEncoder(str(tmp_path), variant="packed")


def test_options_checked_and_gpu_options_ignored_on_cpu(tiny_model):
    with pytest.raises(ValueError, match="unknown packed-variant option.*use_trition"):
        CrossEncoder(str(tiny_model), variant="packed", backend_kwargs={"use_trition": True})
    encoder = CrossEncoder(str(tiny_model), variant="packed", backend_kwargs={"use_triton": True, "cuda_graphs": True})
    details = encoder.info()["details"]
    assert "only on CUDA" in details["triton"] and "CUDA device" in details["cuda_graphs"]
    assert details["elementwise"] == "torch" and encoder.info()["thread_safe"] is True


def test_cuda_only_attention_refused_on_cpu():
    with pytest.raises(ValueError, match="flash-attn-varlen.*CUDA"):
        select_attention(torch.device("cpu"), torch.float32, 32, requested="flash-attn-varlen")
    with pytest.raises(ValueError, match="unknown attention 'nope'"):
        select_attention(torch.device("cpu"), torch.float32, 32, requested="nope")


def test_graph_buckets_pad_with_short_dummy_sequences():
    from crossenc.backends.torch_backend.cuda_graphs import CudaGraphRunner, token_buckets

    assert token_buckets(512, 4096) == (512, 768, 1024, 1536, 2048, 3072, 4096)
    _, encoder, pad = build_hf("bert")
    encoder.ops = replace(encoder.ops, attention=ATTENTION["triton-varlen"])  # graph-safe; not run here
    runner = CudaGraphRunner(
        encoder, torch.device("cpu"), max_seqlen=64, max_batch=8, buckets=(128, 256), pad_token_id=pad, pad_position=0
    )
    tokens = pack_batch(random_batch([5, 1, 30], pad, 99, token_types=True), "absolute", pad)
    bucket = runner.bucket_for(tokens)
    assert bucket == 128
    host = runner._host_inputs(tokens, bucket)
    lengths = np.diff(host["cu_seqlens"])
    assert host["input_ids"].shape == (128,) and host["cu_seqlens"][-1] == 128
    assert lengths[:3].tolist() == [5, 1, 30] and lengths.max() <= 64 and (lengths >= 0).all()
    assert host["first_index"][:3].tolist() == [0, 5, 6]
    assert runner.bucket_for(pack_batch(random_batch([65], pad, 99, True), "absolute", pad)) is None  # > max_seqlen


def test_attention_self_test_flags_broken_kernels():
    from crossenc.kernels.attention import AttentionChoice, _self_test

    cpu = torch.device("cpu")
    assert _self_test(ATTENTION["sdpa-padded"], cpu, torch.float32, 16) is None
    wrong = AttentionChoice("wrong", lambda q, k, v, varlen, scale: q, graph_safe=True)
    assert "max abs error" in _self_test(wrong, cpu, torch.float32, 16)

    def broken(q, k, v, varlen, scale):
        raise RuntimeError("no kernel image for this GPU")

    assert "no kernel image" in _self_test(AttentionChoice("broken", broken, graph_safe=True), cpu, torch.float32, 16)


def test_first_token_attention_matches_reference_and_handles_empty_sequences():
    from crossenc.kernels.packed_model import first_token_attention

    torch.manual_seed(0)
    lengths = [3, 1, 0, 7]
    cu_seqlens = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32)
    key, value = torch.randn(sum(lengths), 2, 8), torch.randn(sum(lengths), 2, 8)
    query = torch.randn(len(lengths), 2, 8)
    got = first_token_attention(query, key, value, cu_seqlens, 0.35)
    for index, (start, end) in enumerate(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist())):
        if start == end:
            assert torch.equal(got[index], torch.zeros(2, 8))
            continue
        probabilities = torch.softmax(torch.einsum("hd,thd->ht", query[index], key[start:end]) * 0.35, dim=-1)
        torch.testing.assert_close(got[index], torch.einsum("ht,thd->hd", probabilities, value[start:end]))


# ----------------------------------------------------------------------------- sliding window (ModernBERT)
@pytest.mark.parametrize("name", sorted(set(WINDOWED_ATTENTION) - CUDA_ONLY))
@pytest.mark.parametrize("window", [0, 2, 8, 100])
def test_windowed_attention_matches_reference(name, window):
    torch.manual_seed(0)
    lengths = np.array([1, 3, 17, 1, 70, 2, 9], dtype=np.int64)
    cu_seqlens = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    q, k, v = torch.randn(int(lengths.sum()), 3, 4, 16).unbind(1)
    varlen = VarlenBatch(cu_seqlens, int(lengths.max()), lengths)
    expected = attention_reference(q, k, v, VarlenBatch(cu_seqlens, int(lengths.max())), 0.25, window)
    torch.testing.assert_close(WINDOWED_ATTENTION[name].function(q, k, v, varlen, 0.25, window), expected,
                               atol=1e-5, rtol=0)  # fmt: skip
    if window < 69:  # the band changes the 70-token sequence: the test can tell a window from none
        full = attention_reference(q, k, v, varlen, 0.25)
        assert float((full - expected).abs().max()) > 1e-2


def test_windowed_attention_choice_on_cpu():
    from crossenc.kernels.attention import AttentionChoice, _self_test

    cpu = torch.device("cpu")
    assert select_windowed_attention(cpu).name == "sdpa-auto-window"
    with pytest.raises(ValueError, match="triton-varlen-window.*CUDA"):
        select_windowed_attention(cpu, requested="triton-varlen-window")
    with pytest.raises(ValueError, match="unknown windowed attention 'nope'"):
        select_windowed_attention(cpu, requested="nope")
    assert _self_test(WINDOWED_ATTENTION["sdpa-padded-window"], cpu, torch.float32, 16, window=4) is None
    no_band = AttentionChoice("no-band", lambda q, k, v, varlen, scale, window: attention_reference(
        q, k, v, varlen, scale), graph_safe=True)  # fmt: skip
    assert "max abs error" in _self_test(no_band, cpu, torch.float32, 16, window=4)


def test_first_token_attention_with_window_sees_only_the_first_window():
    from crossenc.kernels.packed_model import first_token_attention

    torch.manual_seed(0)
    lengths = [3, 1, 20]
    cu_seqlens = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32)
    key, value = torch.randn(sum(lengths), 2, 8), torch.randn(sum(lengths), 2, 8)
    query = torch.randn(len(lengths), 2, 8)
    got = first_token_attention(query, key, value, cu_seqlens, 0.35, window=4)
    for index, (start, end) in enumerate(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist())):
        end = min(end, start + 5)  # positions 0..4
        probabilities = torch.softmax(torch.einsum("hd,thd->ht", query[index], key[start:end]) * 0.35, dim=-1)
        torch.testing.assert_close(got[index], torch.einsum("ht,thd->hd", probabilities, value[start:end]))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("layers", [2, 3])  # 2: the last layer is local; 3: global (every 2nd layer is global)
def test_modernbert_pooling_and_window_match_hf(pooling, layers):
    model, encoder, pad = build_hf("modernbert", num_labels=2, classifier_pooling=pooling, num_hidden_layers=layers)
    assert [layer.window for layer in encoder.layers] == [None, 8, None][:layers]
    batch = random_batch(MIXED_LENGTHS, pad, 99, token_types=False, seed=4)
    reference = hf_logits(model, batch)
    assert float(reference.std()) > 1e-3, "random model gives constant logits: the comparison would be vacuous"
    torch.testing.assert_close(packed_logits(encoder, batch, pad), reference, atol=1e-5, rtol=0)
    # with windows wide enough to see every token the long rows change: the comparison above checks the window
    for layer in encoder.layers:
        layer.window = None if layer.window is None else 1000
    assert float((packed_logits(encoder, batch, pad) - reference).abs()[-1].max()) > 1e-3


def test_modernbert_graph_inputs_with_dummy_and_empty_sequences_keep_logits():
    """Mean pooling and the windowed first-token path ignore the spare rows a CUDA graph adds, here on CPU."""
    from crossenc.backends.torch_backend.cuda_graphs import CudaGraphRunner

    for pooling in ("cls", "mean"):
        _, encoder, pad = build_hf("modernbert", classifier_pooling=pooling)
        batch = random_batch([5, 1, 30], pad, 99, token_types=False, seed=5)
        tokens = pack_batch(batch, "absolute", pad)
        eager = packed_logits(encoder, batch, pad)
        encoder.ops = replace(encoder.ops, attention=ATTENTION["reference"], windowed_attention=WINDOWED_ATTENTION[
            "reference-window"])  # fmt: skip
        graph_safe = replace(encoder.ops.attention, graph_safe=True)  # only to build the runner; not captured here
        encoder.ops = replace(encoder.ops, attention=graph_safe, windowed_attention=replace(
            encoder.ops.windowed_attention, graph_safe=True))  # fmt: skip
        runner = CudaGraphRunner(encoder, torch.device("cpu"), max_seqlen=64, max_batch=8, buckets=(128,),
                                 pad_token_id=pad, pad_position=0)  # fmt: skip
        host = {name: torch.from_numpy(array) for name, array in runner._host_inputs(tokens, 128).items()}
        with torch.inference_mode():
            logits = runner._forward(host)
        torch.testing.assert_close(logits[:3], eager, atol=1e-5, rtol=0)
