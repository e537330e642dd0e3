"""Triton kernels against their pure-torch references, on CPU through the Triton interpreter.

``TRITON_INTERPRET=1`` only works if it is set before ``import triton`` (triton decorates its
own ``tl.sum`` etc. at import). This module sets it first; when something earlier in the
session already imported triton normally, the tests here are skipped in-process and
``test_kernels_in_fresh_interpreter_process`` reruns this file in a subprocess instead.
Note: the variable stays set for the rest of the pytest process.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["TRITON_INTERPRET"] = "1"  # before the first `import triton` of this process, if it is
triton = pytest.importorskip("triton", reason="triton not installed (pip install 'crossenc[gpu]')")

from crossenc.kernels.attention import ATTENTION  # noqa: E402
from crossenc.kernels.ops import triton_ops  # noqa: E402
from crossenc.kernels.packing import pack_batch  # noqa: E402
from crossenc.predictor import TokenBatch  # noqa: E402

INTERPRETED = type(triton.language.sum).__name__ == "InterpretedFunction"
KERNEL_MODULES = (
    "crossenc.kernels.triton_bias_gelu",
    "crossenc.kernels.triton_layer_norm",
    "crossenc.kernels.triton_attention",
)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # sigmoid tails


@pytest.fixture(scope="module")
def kernels():
    """The kernel modules, (re)decorated in interpreter mode."""
    if not INTERPRETED:
        pytest.skip("triton was imported before TRITON_INTERPRET=1; run in a subprocess below")
    modules = {}
    for name in KERNEL_MODULES:
        module = sys.modules.get(name)
        modules[name.rsplit(".", 1)[1]] = importlib.reload(module) if module else importlib.import_module(name)
    return modules


def test_kernels_in_fresh_interpreter_process():
    """Fallback: the same tests in a new process, where TRITON_INTERPRET precedes `import triton`."""
    if INTERPRETED:
        pytest.skip("the kernel tests ran in this process")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def cu_seqlens_of(lengths: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))


@pytest.mark.parametrize("flavour", ["erf", "tanh"])
@pytest.mark.parametrize("shape", [(1, 7), (37, 100), (5, 1536)])
def test_bias_gelu(kernels, flavour, shape):
    module = kernels["triton_bias_gelu"]
    torch.manual_seed(0)
    x, bias = torch.randn(shape) * 3, torch.randn(shape[-1])
    expected = module.bias_gelu_reference(x, bias, flavour)
    torch.testing.assert_close(module.bias_gelu(x, bias, flavour), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 32), (13, 100), (3, 384)])
def test_add_layer_norm(kernels, with_bias, shape):
    module = kernels["triton_layer_norm"]
    torch.manual_seed(1)
    x, residual = torch.randn(shape), torch.randn(shape)
    bias = torch.randn(shape[-1]) if with_bias else None
    weight, shift = torch.randn(shape[-1]), torch.randn(shape[-1])
    expected = module.add_layer_norm_reference(x, bias, residual, weight, shift, 1e-12)
    got = module.add_layer_norm(x, bias, residual, weight, shift, 1e-12)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head_dim", [32, 64])
@pytest.mark.parametrize(
    "lengths",
    [[1], [1, 1, 1], [3, 17, 65, 129, 64], list(np.random.default_rng(0).integers(1, 21, 40))],
    ids=["single-token", "all-length-1", "odd-and-block-edges", "many-sequences"],
)
def test_varlen_attention(kernels, head_dim, lengths):
    module = kernels["triton_attention"]
    torch.manual_seed(2)
    lengths = [int(length) for length in lengths]
    cu_seqlens = cu_seqlens_of(lengths)
    q, k, v = torch.randn(sum(lengths), 3, 2, head_dim).unbind(1)  # strided views, as in the model
    args = (q, k, v, cu_seqlens, max(lengths), head_dim**-0.5)
    expected = module.varlen_attention_reference(*args)
    torch.testing.assert_close(module.varlen_attention(*args), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", [0, 5, 64, 100])
@pytest.mark.parametrize("lengths", [[1], [3, 17, 65, 129, 64, 200]], ids=["single-token", "odd-and-block-edges"])
def test_varlen_attention_with_window(kernels, lengths, window):
    """Band |i - j| <= window, including windows that skip whole key blocks (200 tokens, window 5)."""
    module = kernels["triton_attention"]
    torch.manual_seed(3)
    cu_seqlens = cu_seqlens_of(lengths)
    q, k, v = torch.randn(sum(lengths), 3, 2, 32).unbind(1)
    args = (q, k, v, cu_seqlens, max(lengths), 32**-0.5)
    expected = module.varlen_attention_reference(*args, window)
    torch.testing.assert_close(module.varlen_attention(*args, window), expected, atol=1e-5, rtol=0)


def test_varlen_attention_rejects_other_head_sizes(kernels):
    q = torch.zeros(4, 2, 16)
    with pytest.raises(ValueError, match="head_dim 16"):
        kernels["triton_attention"].varlen_attention(q, q, q, cu_seqlens_of([4]), 4, 0.25)


def build_bert(seed: int = 0):
    """Tiny BERT with head size 32 (the Triton attention needs 32 or 64)."""
    from transformers import BertConfig, BertForSequenceClassification

    from crossenc.kernels.packed_model import build_packed_encoder

    config = BertConfig(
        vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=128, num_labels=2, initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    encoder = build_packed_encoder(model)
    encoder.ops = triton_ops(ATTENTION["triton-varlen"], encoder.activation, encoder.hidden_act)
    return model, encoder


def random_batch(lengths: list[int], seed: int = 0) -> TokenBatch:
    """Padded BERT batch (pad id 0) with a second segment of token type 1."""
    rng = np.random.default_rng(seed)
    rows, width = len(lengths), max(lengths)
    input_ids = np.zeros((rows, width), dtype=np.int64)
    types = np.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = rng.integers(1, 99, length)
        types[row, length // 2 : length] = 1
    mask = (np.arange(width) < np.asarray(lengths)[:, None]).astype(np.int64)
    return TokenBatch(input_ids, mask, types, np.asarray(lengths, dtype=np.int64))


def eager_inputs(tokens):
    from crossenc.kernels.attention import VarlenBatch

    return (
        torch.from_numpy(tokens.input_ids),
        torch.from_numpy(tokens.token_type_ids),
        torch.from_numpy(tokens.position_ids),
        VarlenBatch(torch.from_numpy(tokens.cu_seqlens), tokens.max_seqlen, tokens.lengths),
        torch.from_numpy(tokens.cu_seqlens[:-1].astype(np.int64)),
    )


def test_packed_encoder_with_triton_ops_matches_hf(kernels):
    model, encoder = build_bert()
    assert encoder.ops.elementwise == "triton"
    batch = random_batch([7, 1, 33, 2, 65])
    with torch.inference_mode():
        logits = encoder(*eager_inputs(pack_batch(batch, "absolute", 0)))
        expected = model(
            input_ids=torch.from_numpy(batch.input_ids),
            attention_mask=torch.from_numpy(batch.attention_mask),
            token_type_ids=torch.from_numpy(batch.token_type_ids),
        ).logits
    assert float(expected.std()) > 1e-3, "constant logits: the comparison would be vacuous"
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_graph_bucket_padding_leaves_real_logits_unchanged(kernels):
    """The inputs a CUDA graph replays (dummy + empty sequences) give the eager logits, here on CPU."""
    from crossenc.backends.torch_backend.cuda_graphs import CudaGraphRunner

    _, encoder = build_bert(seed=1)
    runner = CudaGraphRunner(
        encoder, torch.device("cpu"), max_seqlen=32, max_batch=6, buckets=(64, 128), pad_token_id=0, pad_position=0
    )
    tokens = pack_batch(random_batch([9, 1, 30, 4], seed=4), "absolute", 0)
    host = runner._host_inputs(tokens, runner.bucket_for(tokens))
    assert (np.diff(host["cu_seqlens"]) == 0).any(), "no empty sequence slot: the test would miss that case"
    with torch.inference_mode():
        graphed = runner._forward({name: torch.from_numpy(array) for name, array in host.items()})
        eager = encoder(*eager_inputs(tokens))
    torch.testing.assert_close(graphed[: len(tokens.lengths)], eager, atol=1e-6, rtol=0)
