"""The packed (padding-free) torch predictor behind the variants ``packed``, ``packed-fp16``, ``packed-bf16``.

It declares ``is_padded=False``, so the batcher budgets ``sum(lengths)`` tokens per batch and
hands it :class:`PackedTokenBatch` (a padded :class:`TokenBatch` is accepted too and unpadded),
and runs :class:`~crossenc.kernels.packed_model.PackedEncoder` on the real tokens only.

``request.options`` (``backend_kwargs`` of ``CrossEncoder``):
``use_triton`` (True for ``packed-fp16`` on CUDA) Triton bias+GELU, residual+LayerNorm and attention kernels on CUDA;
``cuda_graphs`` (True for ``packed-fp16`` on CUDA) replay one CUDA graph per token bucket; ``attention`` (None) force an
implementation from ``crossenc.kernels.attention.ATTENTION``; ``windowed_attention`` (None) the same for
sliding-window layers (ModernBERT), from ``WINDOWED_ATTENTION``; ``graph_max_tokens`` (32768)
largest graph bucket; ``graph_max_batch`` (256) most sequences per graph batch; ``in_flight`` (2 on
CUDA, else 1) batches queued on the GPU before the oldest one's logits are read (:mod:`.in_flight`);
``pin_inputs`` (False) copy inputs to the GPU through pinned memory (:func:`.in_flight.host_tensor`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crossenc.backends import BACKENDS, LoadRequest, check_options
from crossenc.backends.torch_backend.cuda_graphs import CudaGraphRunner, token_buckets
from crossenc.backends.torch_backend.in_flight import (
    DEFAULT_IN_FLIGHT,
    InFlightPredictions,
    check_depth,
    default_in_flight,
    to_device,
)
from crossenc.backends.torch_backend.threads import set_default_threads
from crossenc.hardware import has_cpu_bf16
from crossenc.inputs import check_flag
from crossenc.kernels.attention import (
    WINDOWED_ATTENTION,
    AttentionChoice,
    VarlenBatch,
    select_attention,
    select_windowed_attention,
)
from crossenc.kernels.ops import PackedOps, torch_ops, triton_ops
from crossenc.kernels.packed_model import (
    PackedEncoder,
    PackedModernBertEncoder,
    architecture_for,
    build_packed_encoder,
)
from crossenc.kernels.packing import PackedTokens, pack_batch
from crossenc.kernels.triton_support import triton_available
from crossenc.predictor import PackedTokenBatch, PredictorInfo, TokenBatch

PRECISIONS: dict[str, tuple[str, torch.dtype]] = {
    "packed": ("fp32", torch.float32),
    "packed-fp16": ("fp16", torch.float16),
    "packed-bf16": ("bf16", torch.bfloat16),
}
DEFAULT_OPTIONS: dict[str, Any] = {
    "use_triton": False,
    "cuda_graphs": False,
    "attention": None,
    "windowed_attention": None,
    "graph_max_tokens": 32768,
    "graph_max_batch": 256,
    "in_flight": DEFAULT_IN_FLIGHT,
    "pin_inputs": False,
}
# fp16 only, the precision measured on an H100: graphs + Triton 95,911 pairs/s vs 76,713 with torch ops
# (docs/gpu-defaults.md); without triton torch ops run, and a failed capture runs eager.
CUDA_FP16_DEFAULTS: dict[str, Any] = {"cuda_graphs": True, "use_triton": True}


class PackedPredictor(InFlightPredictions):
    """Packs each padded batch and runs the packed encoder (through a CUDA graph when one fits)."""

    def __init__(
        self,
        encoder: PackedEncoder | PackedModernBertEncoder,
        info: PredictorInfo,
        position_style: str,
        pad_token_id: int,
        graphs: CudaGraphRunner | None = None,
        in_flight: int = 1,
        pin_inputs: bool = False,
    ) -> None:
        self.encoder = encoder
        self.info = info
        self.device = torch.device(info.device)
        self.position_style = position_style
        self.pad_token_id = pad_token_id
        self.graphs = graphs
        self.in_flight = in_flight
        self.pin_inputs = pin_inputs

    def _launch(self, batch: TokenBatch | PackedTokenBatch) -> torch.Tensor:
        tokens = pack_batch(batch, self.position_style, self.pad_token_id)
        logits = self.graphs.run(tokens) if self.graphs is not None else None
        if logits is None:
            logits = self._eager(tokens)
            if self.graphs is not None and self.graphs.disabled_reason:
                self.info.details["cuda_graphs"] = f"disabled: {self.graphs.disabled_reason}"
        return logits

    @torch.inference_mode()
    def predict_logits(self, batch: TokenBatch | PackedTokenBatch) -> np.ndarray:
        return self._launch(batch).float().cpu().numpy()

    def _eager(self, tokens: PackedTokens) -> torch.Tensor:
        def on_device(array: np.ndarray) -> torch.Tensor:
            return to_device(array, self.device, self.pin_inputs)

        varlen = VarlenBatch(on_device(tokens.cu_seqlens), tokens.max_seqlen, tokens.lengths)
        first_index = varlen.cu_seqlens[:-1].long()  # already on the device: no fifth host copy
        ids, types, positions = (on_device(a) for a in (tokens.input_ids, tokens.token_type_ids, tokens.position_ids))
        return self.encoder(ids, types, positions, varlen, first_index)


def _parse_options(options: dict[str, Any], device: str, dtype: torch.dtype) -> dict[str, Any]:
    """``options`` over the defaults for ``device`` and ``dtype`` (:data:`CUDA_FP16_DEFAULTS`), checked."""
    check_options(options, *BACKENDS["torch"].known_options("packed"))
    fp16_on_cuda = torch.device(device).type == "cuda" and dtype == torch.float16
    defaults = {**DEFAULT_OPTIONS, **(CUDA_FP16_DEFAULTS if fp16_on_cuda else {})}
    defaults["in_flight"] = default_in_flight(device)
    parsed = {**defaults, **options}
    for name in ("graph_max_tokens", "graph_max_batch"):
        if not isinstance(parsed[name], int) or parsed[name] <= 0:
            raise ValueError(f"{name} must be a positive integer, got {parsed[name]!r}")
    if parsed["windowed_attention"] is not None and parsed["windowed_attention"] not in WINDOWED_ATTENTION:
        raise ValueError(
            f"unknown windowed_attention {parsed['windowed_attention']!r}; choose one of {sorted(WINDOWED_ATTENTION)}"
        )
    check_depth(parsed["in_flight"])
    check_flag("pin_inputs", parsed["pin_inputs"])
    return parsed


def _check_device(device: str, variant: str) -> torch.device:
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available in this torch build")
    if variant == "packed-fp16" and not on_cuda:
        raise ValueError("variant 'packed-fp16' needs a CUDA device; on CPU use 'packed' or 'packed-bf16'")
    if variant == "packed-bf16" and not on_cuda and not has_cpu_bf16():
        raise ValueError("variant 'packed-bf16' on CPU needs AVX512_BF16 or AMX; this CPU has neither. Use 'packed'")
    return torch.device(device)


def _choose_ops(
    encoder: PackedEncoder | PackedModernBertEncoder, device: torch.device, dtype: torch.dtype, options: dict[str, Any]
) -> tuple[PackedOps, str]:
    """(ops, note on Triton) for this device: Triton only on CUDA, when importable and asked for.

    Models with sliding-window layers (ModernBERT) also get a windowed attention; their pre-norm
    GLU layers keep torch element-wise ops (only the attention may be Triton).
    """
    note = "not requested"
    use_triton = bool(options["use_triton"])
    if use_triton and device.type != "cuda":
        note, use_triton = "requested, but Triton kernels run only on CUDA: torch ops used", False
    elif use_triton and not triton_available():
        note, use_triton = "on, but triton does not import (pip install 'crossenc[gpu]'): torch ops used", False
    attention: AttentionChoice = select_attention(device, dtype, encoder.head_dim, use_triton, options["attention"])
    windowed = None
    if encoder.has_local_layers:
        windowed = select_windowed_attention(
            device, dtype, encoder.head_dim, use_triton, options["windowed_attention"], encoder.window
        )
    if use_triton:
        import triton

        note = f"triton {triton.__version__}"
        if encoder.fused_tails:
            return triton_ops(attention, encoder.activation, encoder.hidden_act, windowed), note
        note += " (attention only: this model's pre-norm GLU layers have no fused Triton tails)"
    return torch_ops(attention, encoder.activation, windowed), note


def _graph_runner(
    encoder: PackedEncoder | PackedModernBertEncoder,
    device: torch.device,
    options: dict[str, Any],
    request: LoadRequest,
    position_style: str,
    pad_token_id: int,
) -> tuple[CudaGraphRunner | None, str]:
    """(runner or None, status line for PredictorInfo.details)."""
    if not options["cuda_graphs"]:
        return None, "off"
    if device.type != "cuda":
        return None, "on, but CUDA graphs need a CUDA device: eager"
    for attention in (encoder.ops.attention, encoder.ops.windowed_attention):
        if attention is not None and not attention.graph_safe:
            return None, f"on, but attention {attention.name!r} is not capturable: eager"
    buckets = token_buckets(512, max(512, options["graph_max_tokens"]))
    runner = CudaGraphRunner(
        encoder,
        device,
        max_seqlen=request.max_length,
        max_batch=options["graph_max_batch"],
        buckets=buckets,
        pad_token_id=pad_token_id,
        pad_position=pad_token_id if position_style == "padding_offset" else 0,
        pin_inputs=options["pin_inputs"],
    )
    return runner, f"on: lazy capture per token bucket {list(buckets)}, up to {options['graph_max_batch']} sequences"


def _windowed_details(windowed: AttentionChoice | None) -> dict[str, str]:
    """``windowed_attention`` (+ note) for models with sliding-window layers; nothing otherwise."""
    if windowed is None:
        return {}
    details = {"windowed_attention": windowed.name}
    if windowed.note:
        details["windowed_attention_note"] = windowed.note
    return details


def load_packed(request: LoadRequest) -> PackedPredictor:
    """Build the packed predictor for ``request.variant`` (``packed``, ``packed-fp16`` or ``packed-bf16``)."""
    variant = request.variant
    if variant not in PRECISIONS:
        raise ValueError(f"unknown packed variant {variant!r}; choose one of {sorted(PRECISIONS)}")
    device = _check_device(request.device, variant)
    precision, dtype = PRECISIONS[variant]
    options = _parse_options(dict(request.options), request.device, dtype)
    architecture = architecture_for(request.config)  # fail before loading weights
    if device.type == "cpu":
        set_default_threads()
    model = request.source.load_torch_model(request.config)
    encoder = build_packed_encoder(model).to(device=device, dtype=dtype)
    encoder.ops, triton_note = _choose_ops(encoder, device, dtype, options)
    pad_token_id = int(getattr(request.config, "pad_token_id", None) or 0)
    graphs, graph_status = _graph_runner(encoder, device, options, request, architecture.position_style, pad_token_id)
    details: dict[str, Any] = {
        "attention": encoder.ops.attention.name,
        **({"attention_note": encoder.ops.attention.note} if encoder.ops.attention.note else {}),
        **_windowed_details(encoder.ops.windowed_attention),
        "elementwise": encoder.ops.elementwise,
        "triton": triton_note,
        "cuda_graphs": graph_status,
        "in_flight": options["in_flight"],
        "pin_inputs": options["pin_inputs"],
        "torch": torch.__version__,
    }
    if device.type == "cpu":
        details["threads"] = torch.get_num_threads()
    info = PredictorInfo(
        backend="torch",
        variant=variant,
        device=str(device),
        precision=precision,
        max_length=request.max_length,
        num_labels=int(request.config.num_labels),
        is_padded=False,
        max_batch_size=options["graph_max_batch"] if graphs is not None else None,
        thread_safe=graphs is None,
        details=details,
    )
    return PackedPredictor(
        encoder, info, architecture.position_style, pad_token_id, graphs, options["in_flight"], options["pin_inputs"]
    )
