"""Variable-length (packed) self-attention: the fast paths beside the pure-torch reference (``varlen``).

Every implementation takes ``q, k, v`` of shape ``[total_tokens, heads, head_dim]`` and a
:class:`VarlenBatch` (``cu_seqlens`` + ``max_seqlen``), and returns ``[total_tokens, heads,
head_dim]``; token ``t`` of sequence ``i`` attends only to the tokens of sequence ``i``.
:func:`select_attention` picks one at load time for the device, dtype and head size.

Sliding-window (local) layers, ModernBERT's, use :data:`WINDOWED_ATTENTION`: the same call plus
``window``, where token ``i`` attends only to tokens ``j`` of its sequence with ``|i - j| <= window``
(a band mask); :func:`select_windowed_attention` picks one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from crossenc.kernels.varlen import VarlenBatch, attention_reference, band_mask

AUTO_PER_SEQUENCE_FROM = 64  # sdpa-auto: batches whose longest sequence has this many tokens go per sequence
AttentionFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, VarlenBatch, float], torch.Tensor]
WindowedAttentionFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, VarlenBatch, float, int], torch.Tensor]


@dataclass(frozen=True)
class AttentionChoice:
    """The attention picked at load time; ``graph_safe``: reads only device tensors (CUDA-graph capturable)."""

    name: str
    function: AttentionFunction | WindowedAttentionFunction  # windowed ones take ``window`` last
    graph_safe: bool
    note: str = ""  # why faster candidates were passed over, if any


# ----------------------------------------------------------------------------- pure torch
def attention_per_sequence_sdpa(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """One SDPA call per sequence (no padding, one kernel launch per sequence)."""
    out = torch.empty_like(q)
    bounds = np.concatenate([[0], np.cumsum(varlen.host_lengths())]).tolist()  # host copy: no device sync
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (x[start:end].transpose(0, 1).unsqueeze(0) for x in (q, k, v))
        out[start:end] = F.scaled_dot_product_attention(qs, ks, vs, scale=scale)[0].transpose(0, 1)
    return out


def _length_groups(varlen: VarlenBatch) -> list[torch.Tensor]:
    """Token index matrices ``[sequences, length]``, one per distinct sequence length."""
    lengths = varlen.host_lengths()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    device = varlen.cu_seqlens.device
    groups = []
    for length in np.unique(lengths):
        chosen = starts[lengths == length]
        index = chosen[:, None] + np.arange(length)[None, :]
        groups.append(torch.from_numpy(index).to(device))
    return groups


def attention_length_groups_sdpa(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """Batch the sequences of equal length together: one SDPA call per distinct length."""
    out = torch.empty_like(q)
    for index in varlen.cached("length_groups", lambda: _length_groups(varlen)):
        qs, ks, vs = (x[index].transpose(1, 2) for x in (q, k, v))  # [n, heads, length, dim]
        out[index] = F.scaled_dot_product_attention(qs, ks, vs, scale=scale).transpose(1, 2)
    return out


def _padded_layout(varlen: VarlenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat index of each packed token in a ``[batch * max_seqlen]`` grid, and the key mask."""
    lengths = varlen.host_lengths()
    rows = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    device = varlen.cu_seqlens.device
    flat_index = torch.from_numpy(rows * varlen.max_seqlen + within).to(device)
    key_mask = torch.from_numpy(np.arange(varlen.max_seqlen)[None, :] < lengths[:, None]).to(device)
    return flat_index, key_mask[:, None, None, :]


def attention_padded_sdpa(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """Scatter into a padded grid for one masked SDPA call, gather back (projections stay packed)."""
    flat_index, key_mask = varlen.cached("padded_layout", lambda: _padded_layout(varlen))
    batch, heads, head_dim = len(varlen.host_lengths()), q.shape[1], q.shape[2]

    def to_grid(x: torch.Tensor) -> torch.Tensor:
        # index_copy_/index_select: on CPU ~100x faster than grid[index] = x for strided x
        grid = x.new_zeros(batch * varlen.max_seqlen, heads, head_dim).index_copy_(0, flat_index, x)
        return grid.view(batch, varlen.max_seqlen, heads, head_dim).transpose(1, 2)

    context = F.scaled_dot_product_attention(to_grid(q), to_grid(k), to_grid(v), attn_mask=key_mask, scale=scale)
    return context.transpose(1, 2).reshape(batch * varlen.max_seqlen, heads, head_dim).index_select(0, flat_index)


def attention_cpu_auto(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """Per batch: padded SDPA for short sequences (call overhead dominates), per-sequence SDPA otherwise."""
    if varlen.max_seqlen < AUTO_PER_SEQUENCE_FROM:
        return attention_padded_sdpa(q, k, v, varlen, scale)
    return attention_per_sequence_sdpa(q, k, v, varlen, scale)


def attention_nested_sdpa(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """SDPA over nested (jagged) tensors: torch dispatches to its varlen flash/efficient kernels on CUDA."""
    offsets = varlen.cached("offsets_int64", lambda: varlen.cu_seqlens.long())

    def nest(x: torch.Tensor) -> torch.Tensor:
        jagged = torch.nested.nested_tensor_from_jagged(x.contiguous(), offsets, max_seqlen=varlen.max_seqlen)
        return jagged.transpose(1, 2)

    context = F.scaled_dot_product_attention(nest(q), nest(k), nest(v), scale=scale)
    return context.transpose(1, 2).values()


# ----------------------------------------------------------------------------- sliding window (pure torch)
def attention_per_sequence_window(q, k, v, varlen: VarlenBatch, scale: float, window: int) -> torch.Tensor:
    """One SDPA call per sequence with a band mask (none for sequences the window covers entirely)."""
    out = torch.empty_like(q)
    bounds = np.concatenate([[0], np.cumsum(varlen.host_lengths())]).tolist()  # host copy: no device sync
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (x[start:end].transpose(0, 1).unsqueeze(0) for x in (q, k, v))
        mask = band_mask(end - start, window, q.device) if end - start > window + 1 else None
        out[start:end] = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)[0].transpose(0, 1)
    return out


def _padded_band_mask(varlen: VarlenBatch, window: int) -> torch.Tensor:
    """``[batch, 1, L, L]`` key mask and band; padding query rows keep every real key (no all-masked rows)."""
    _, key_mask = varlen.cached("padded_layout", lambda: _padded_layout(varlen))
    device = varlen.cu_seqlens.device
    lengths = torch.from_numpy(varlen.host_lengths()).to(device)
    padding_query = torch.arange(varlen.max_seqlen, device=device)[None, :] >= lengths[:, None]  # [batch, L]
    band = band_mask(varlen.max_seqlen, window, device)[None, None]
    return key_mask & (band | padding_query[:, None, :, None])


def attention_padded_window(q, k, v, varlen: VarlenBatch, scale: float, window: int) -> torch.Tensor:
    """:func:`attention_padded_sdpa` with the band mask added to the key mask."""
    flat_index, _ = varlen.cached("padded_layout", lambda: _padded_layout(varlen))
    mask = varlen.cached(f"padded_band_{window}", lambda: _padded_band_mask(varlen, window))
    batch, heads, head_dim = len(varlen.host_lengths()), q.shape[1], q.shape[2]

    def to_grid(x: torch.Tensor) -> torch.Tensor:
        grid = x.new_zeros(batch * varlen.max_seqlen, heads, head_dim).index_copy_(0, flat_index, x)
        return grid.view(batch, varlen.max_seqlen, heads, head_dim).transpose(1, 2)

    context = F.scaled_dot_product_attention(to_grid(q), to_grid(k), to_grid(v), attn_mask=mask, scale=scale)
    return context.transpose(1, 2).reshape(batch * varlen.max_seqlen, heads, head_dim).index_select(0, flat_index)


def attention_auto_window(q, k, v, varlen: VarlenBatch, scale: float, window: int) -> torch.Tensor:
    """Same split as :func:`attention_cpu_auto`: padded grid for short batches, per sequence otherwise."""
    if varlen.max_seqlen < AUTO_PER_SEQUENCE_FROM:
        return attention_padded_window(q, k, v, varlen, scale, window)
    return attention_per_sequence_window(q, k, v, varlen, scale, window)


# ----------------------------------------------------------------------------- external kernels
def attention_flash_attn(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """flash-attn's ``flash_attn_varlen_func`` (fp16/bf16, CUDA)."""
    from flash_attn import flash_attn_varlen_func

    cu = varlen.cu_seqlens
    return flash_attn_varlen_func(q, k, v, cu, cu, varlen.max_seqlen, varlen.max_seqlen, softmax_scale=scale)


def attention_torch_varlen(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """``torch.nn.attention.varlen.varlen_attn``: torch's bundled varlen flash kernel (fp16/bf16, CUDA sm80+)."""
    from torch.nn.attention.varlen import varlen_attn

    cu = varlen.cu_seqlens
    return varlen_attn(q, k, v, cu, cu, varlen.max_seqlen, varlen.max_seqlen, scale=scale)


def attention_triton(q, k, v, varlen: VarlenBatch, scale: float) -> torch.Tensor:
    """crossenc's Triton varlen kernel (head size 32 or 64)."""
    from crossenc.kernels.triton_attention import varlen_attention

    return varlen_attention(q, k, v, varlen.cu_seqlens, varlen.max_seqlen, scale)


def attention_flash_attn_window(q, k, v, varlen: VarlenBatch, scale: float, window: int) -> torch.Tensor:
    """flash-attn's varlen kernel with ``window_size=(window, window)`` (inclusive on both sides, as HF's mask)."""
    from flash_attn import flash_attn_varlen_func

    cu = varlen.cu_seqlens
    return flash_attn_varlen_func(
        q, k, v, cu, cu, varlen.max_seqlen, varlen.max_seqlen, softmax_scale=scale, window_size=(window, window)
    )


def attention_torch_varlen_window(q, k, v, varlen: VarlenBatch, scale: float, window: int) -> torch.Tensor:
    """torch's ``varlen_attn`` with ``window_size=(window, window)``."""
    from torch.nn.attention.varlen import varlen_attn

    cu = varlen.cu_seqlens
    return varlen_attn(
        q, k, v, cu, cu, varlen.max_seqlen, varlen.max_seqlen, scale=scale, window_size=(window, window)
    )


def attention_triton_window(q, k, v, varlen: VarlenBatch, scale: float, window: int) -> torch.Tensor:
    """crossenc's Triton varlen kernel, reading only the key blocks of each query block's band."""
    from crossenc.kernels.triton_attention import varlen_attention

    return varlen_attention(q, k, v, varlen.cu_seqlens, varlen.max_seqlen, scale, window)


ATTENTION: dict[str, AttentionChoice] = {
    choice.name: choice
    for choice in (
        AttentionChoice("reference", attention_reference, graph_safe=False),
        AttentionChoice("sdpa-per-sequence", attention_per_sequence_sdpa, graph_safe=False),
        AttentionChoice("sdpa-length-groups", attention_length_groups_sdpa, graph_safe=False),
        AttentionChoice("sdpa-padded", attention_padded_sdpa, graph_safe=False),
        AttentionChoice("sdpa-auto", attention_cpu_auto, graph_safe=False),
        AttentionChoice("sdpa-nested-jagged", attention_nested_sdpa, graph_safe=False),
        AttentionChoice("flash-attn-varlen", attention_flash_attn, graph_safe=True),
        AttentionChoice("torch-varlen", attention_torch_varlen, graph_safe=True),
        AttentionChoice("triton-varlen", attention_triton, graph_safe=True),
    )
}
WINDOWED_ATTENTION: dict[str, AttentionChoice] = {
    choice.name: choice
    for choice in (
        AttentionChoice("reference-window", attention_reference, graph_safe=False),
        AttentionChoice("sdpa-per-sequence-window", attention_per_sequence_window, graph_safe=False),
        AttentionChoice("sdpa-padded-window", attention_padded_window, graph_safe=False),
        AttentionChoice("sdpa-auto-window", attention_auto_window, graph_safe=False),
        AttentionChoice("flash-attn-varlen-window", attention_flash_attn_window, graph_safe=True),
        AttentionChoice("torch-varlen-window", attention_torch_varlen_window, graph_safe=True),
        AttentionChoice("triton-varlen-window", attention_triton_window, graph_safe=True),
    )
}
CUDA_ONLY = frozenset(
    {"flash-attn-varlen", "torch-varlen", "triton-varlen"}
    | {"flash-attn-varlen-window", "torch-varlen-window", "triton-varlen-window"}
)
CPU_DEFAULT = "sdpa-auto"  # measured on CPU, see select_attention
HALF_DTYPES = (torch.float16, torch.bfloat16)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _torch_varlen_usable(device: torch.device) -> bool:
    if not _has_module("torch.nn.attention.varlen"):
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8  # its flash kernel needs Ampere or newer


def select_attention(
    device: torch.device, dtype: torch.dtype, head_dim: int, use_triton: bool = False, requested: str | None = None
) -> AttentionChoice:
    """The attention for this device/dtype/head size, or ``requested`` by name (ValueError if unknown).

    CUDA: Triton kernel when asked for and supported, else flash-attn, else torch's varlen flash
    (half precision), else nested-tensor SDPA, else padded SDPA; each candidate is first run on a
    tiny batch against the reference and skipped (reason in ``note``) if it fails. CPU:
    ``sdpa-auto`` (the projections and FFN, most of the work, always run packed): batches of short
    sequences scatter q/k/v into a padded grid for one masked SDPA call, longer ones run one SDPA
    call per sequence. Measured as process CPU time, 1 thread, ``CrossEncoder.predict`` batch 32
    on a 2-core AMD EPYC (wall clock was too noisy on that shared machine): tiny test BERT, 200
    random pairs (<= ~70 tokens): HF padded SDPA 37 ms, packed + padded SDPA 33, + per-length
    groups 35, + per-sequence 36; demo MiniLM-L6, 64 Debian pairs (long documents): 3405 /
    1998 / 1731 / 1718 ms. Nested (jagged) tensors take a slow path on CPU.
    """
    if requested is not None:
        if requested not in ATTENTION:
            raise ValueError(f"unknown attention {requested!r}; choose one of {sorted(ATTENTION)}")
        if requested in CUDA_ONLY and device.type != "cuda":
            raise ValueError(f"attention {requested!r} needs a CUDA device; on {device.type} use {CPU_DEFAULT!r}")
        return ATTENTION[requested]
    if device.type != "cuda":
        return ATTENTION[CPU_DEFAULT]
    rejected = []
    for name in _cuda_candidates(device, dtype, head_dim, use_triton):
        problem = _self_test(ATTENTION[name], device, dtype, head_dim)
        if problem is None:
            return replace(ATTENTION[name], note="; ".join(rejected))
        rejected.append(f"{name}: {problem}")
    return replace(ATTENTION["sdpa-padded"], note="; ".join(rejected))


def _cuda_candidates(device: torch.device, dtype: torch.dtype, head_dim: int, use_triton: bool) -> list[str]:
    """CUDA attentions worth trying, fastest first."""
    from crossenc.kernels.triton_attention import SUPPORTED_HEAD_DIMS
    from crossenc.kernels.triton_support import triton_available

    candidates = []
    if use_triton and triton_available() and head_dim in SUPPORTED_HEAD_DIMS:
        candidates.append("triton-varlen")
    if dtype in HALF_DTYPES and _has_module("flash_attn"):
        candidates.append("flash-attn-varlen")
    if dtype in HALF_DTYPES and _torch_varlen_usable(device):
        candidates.append("torch-varlen")
    return candidates + ["sdpa-nested-jagged"]


def _self_test(
    choice: AttentionChoice, device: torch.device, dtype: torch.dtype, head_dim: int, window: int | None = None
) -> str | None:
    """Run ``choice`` once on a tiny batch; the problem as text, or None when it matches the reference.

    ``window``: test a windowed attention with this half-width (the 70-token sequence exceeds small ones).
    """
    lengths = np.array([3, 1, 70], dtype=np.int64)
    cu_seqlens = torch.tensor([0, 3, 4, 74], dtype=torch.int32, device=device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = torch.randn(74, 3, 2, head_dim, generator=generator).to(device=device, dtype=dtype).unbind(1)
    windowed = () if window is None else (window,)
    try:
        got = choice.function(q, k, v, VarlenBatch(cu_seqlens, 70, lengths), head_dim**-0.5, *windowed)
    except Exception as error:  # missing kernel for this GPU/dtype, bad install, ...
        return f"{type(error).__name__}: {str(error)[:200]}"
    expected = attention_reference(q, k, v, VarlenBatch(cu_seqlens, 70, lengths), head_dim**-0.5, window)
    error = float((got.float() - expected.float()).abs().max())
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    return None if error <= tolerance else f"max abs error {error:.1e} > {tolerance:.0e}"


def select_windowed_attention(
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    head_dim: int = 64,
    use_triton: bool = False,
    requested: str | None = None,
    window: int = 64,
) -> AttentionChoice:
    """The sliding-window attention for ``device``, or ``requested`` by name from :data:`WINDOWED_ATTENTION`.

    CPU: ``sdpa-auto-window`` (band-masked SDPA with the split of ``sdpa-auto``). CUDA: the
    candidates of :func:`select_attention` with ``window_size`` (Triton when asked for, flash-attn,
    torch's varlen flash), each self-tested at ``window`` against the reference first; if none
    passes, ``sdpa-padded-window``: correct, but it reads host lengths, so CUDA graphs stay off.
    """
    if requested is not None:
        if requested not in WINDOWED_ATTENTION:
            raise ValueError(f"unknown windowed attention {requested!r}; choose one of {sorted(WINDOWED_ATTENTION)}")
        if requested in CUDA_ONLY and device.type != "cuda":
            raise ValueError(f"attention {requested!r} needs a CUDA device; on {device.type} use 'sdpa-auto-window'")
        return WINDOWED_ATTENTION[requested]
    if device.type != "cuda":
        return WINDOWED_ATTENTION["sdpa-auto-window"]
    rejected = []
    for name in _cuda_candidates(device, dtype, head_dim, use_triton):
        if f"{name}-window" not in WINDOWED_ATTENTION:
            continue  # nested-tensor SDPA takes no mask
        problem = _self_test(WINDOWED_ATTENTION[f"{name}-window"], device, dtype, head_dim, min(window, 16))
        if problem is None:
            return replace(WINDOWED_ATTENTION[f"{name}-window"], note="; ".join(rejected))
        rejected.append(f"{name}-window: {problem}")
    rejected.append("torch fallback: no windowed varlen kernel passed; CUDA graphs stay off")
    return replace(WINDOWED_ATTENTION["sdpa-padded-window"], note="; ".join(rejected))
