"""The torch variants that run a Hugging Face module on padded batches: eager, SDPA, torch.compile,
bf16/fp16, int8 (torchao).

Options (``backend_kwargs``): ``in_flight`` (2 on CUDA, else 1) batches queued on a CUDA device before
the oldest one's logits are read (see :mod:`crossenc.backends.torch_backend.in_flight`; 2 measured faster
on an H100). ``first_token`` (True except for ``eager``, the plain Hugging Face reference): run the last
layer for the first token only (:mod:`crossenc.backends.torch_backend.first_token`: the BERT family,
ELECTRA, DistilBERT, ALBERT, MPNet, DeBERTa-v2, ModernBERT with cls pooling; exact). ``pin_inputs``
(False) copy inputs to a CUDA device through pinned memory, so a queued batch's copy does not wait
for the running one (:func:`crossenc.backends.torch_backend.in_flight.host_tensor`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np
import torch

from crossenc.backends import LoadRequest, check_request_options
from crossenc.backends.torch_backend.first_token import first_token_model, last_layer_note
from crossenc.backends.torch_backend.in_flight import InFlightPredictions, check_depth, default_in_flight, to_device
from crossenc.backends.torch_backend.threads import set_default_threads
from crossenc.hardware import has_cpu_bf16
from crossenc.optional import require
from crossenc.predictor import PredictorInfo, TokenBatch

COMPILE_BUCKET_STEP = 16  # torch.compile pads lengths to multiples of this: few shapes, no recompile storms


class TorchPredictor(InFlightPredictions):
    """Runs a Hugging Face sequence-classification module on padded token batches."""

    def __init__(
        self,
        module: torch.nn.Module,
        info: PredictorInfo,
        autocast_dtype: torch.dtype | None = None,
        in_flight: int = 1,
        hf_model: torch.nn.Module | None = None,
        pin_inputs: bool = False,
        min_rows: int = 1,
    ) -> None:
        self.module = module
        self.min_rows = min_rows  # smaller batches run with their first row repeated
        self.hf_model = hf_model  # the Hugging Face model whose weights ``module`` runs
        self.pin_inputs = pin_inputs
        self.info = info
        self.device = torch.device(info.device)
        self.autocast_dtype = autocast_dtype
        self.in_flight = in_flight

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _inputs(self, batch: TokenBatch) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": to_device(batch.input_ids, self.device, self.pin_inputs)}
        # A batch with no padding needs no mask; SDPA then takes its unmasked kernel.
        if int(batch.lengths.min()) < batch.padded_length or self.info.bucket_lengths:
            inputs["attention_mask"] = to_device(batch.attention_mask, self.device, self.pin_inputs)
        if batch.token_type_ids is not None:
            inputs["token_type_ids"] = to_device(batch.token_type_ids, self.device, self.pin_inputs)
        return inputs

    def _launch(self, batch: TokenBatch) -> torch.Tensor:
        rows = batch.batch_size
        if rows < self.min_rows:
            batch = _repeat_first_row(batch, self.min_rows - rows)
        with self._autocast():
            output = self.module(**self._inputs(batch))
        logits = output["logits"] if isinstance(output, dict) else output.logits
        return logits[:rows]

    @torch.inference_mode()
    def predict_logits(self, batch: TokenBatch) -> np.ndarray:
        return self._launch(batch).float().cpu().numpy()

    def to_device(self, device: str) -> "TorchPredictor":
        """Move the weights to ``device`` in place (``module`` shares them with ``hf_model``)."""
        if self.info.bucket_lengths is not None or self.hf_model is None:
            raise ValueError(
                f"torch variant {self.info.variant!r} is compiled for {self.info.device!r} and cannot move; "
                f"load another with CrossEncoder(..., device={device!r})"
            )
        device = _resolve_device(device)
        self.hf_model.to(device)
        self.module.to(device)
        self.device = torch.device(device)
        self.info = dataclasses.replace(self.info, device=device)
        return self


def _repeat_first_row(batch: TokenBatch, extra: int) -> TokenBatch:
    def grow(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else np.concatenate([array, np.repeat(array[:1], extra, axis=0)])

    return TokenBatch(grow(batch.input_ids), grow(batch.attention_mask), grow(batch.token_type_ids), grow(batch.lengths))


def _compile_buckets(max_length: int) -> tuple[int, ...]:
    buckets = list(range(COMPILE_BUCKET_STEP, max_length, COMPILE_BUCKET_STEP))
    return tuple(buckets + [max_length])


def _warm_up(predictor: TorchPredictor, bucket_lengths: tuple[int, ...]) -> None:
    """Compile once for batch 1 and batch > 1 so later batches replay, never recompile."""
    vocab_safe_id = 1
    for rows in (2, 1):
        if rows < predictor.min_rows:  # it would run as the 2-row batch again
            continue
        length = bucket_lengths[0]
        ids = np.full((rows, length), vocab_safe_id, dtype=np.int64)
        mask = np.ones_like(ids)
        lengths = np.full(rows, length, dtype=np.int64)
        predictor.predict_logits(TokenBatch(ids, mask, np.zeros_like(ids), lengths))


def _resolve_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available in this torch build")
    return device


def load_padded(request: LoadRequest) -> TorchPredictor:
    """Build the torch predictor for ``request.variant`` (any but the ``packed*`` ones)."""
    variant = request.variant
    device = _resolve_device(request.device)
    on_cuda = device.startswith("cuda")
    check_request_options("torch", request)
    if device == "cpu":
        set_default_threads()
    if variant == "fp16" and not on_cuda:
        raise ValueError("variant 'fp16' needs a CUDA device; on CPU use 'bf16' (AVX512_BF16/AMX) or 'int8'")
    if variant == "bf16" and not on_cuda and not has_cpu_bf16():
        raise ValueError("variant 'bf16' on CPU needs AVX512_BF16 or AMX; this CPU has neither")
    if variant == "int8" and on_cuda:
        raise ValueError("variant 'int8' is CPU-only; on CUDA use 'fp16' or 'packed-fp16'")

    attn = "eager" if variant == "eager" else "sdpa"
    model_kwargs: dict[str, Any] = {"attn_implementation": request.source.model_kwargs.get("attn_implementation", attn)}
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(variant) if on_cuda else None
    if dtype is not None:
        model_kwargs["dtype"] = dtype
    model = request.source.load_torch_model(request.config, **model_kwargs).to(device).eval()
    autocast_dtype = torch.bfloat16 if variant == "bf16" and not on_cuda else None
    weights = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(next(model.parameters()).dtype)
    precision = {"fp16": "fp16", "bf16": "bf16", "int8": "int8"}.get(variant, weights or "fp32")
    bucket_lengths: tuple[int, ...] | None = None
    # What ran: SDPA falls back to eager attention for architectures without it (MPNet, DeBERTa-v2)
    attention = getattr(model.config, "_attn_implementation", None) or model_kwargs["attn_implementation"]
    details: dict[str, Any] = {"attn_implementation": attention, "torch": torch.__version__}
    if device == "cpu":
        details["threads"] = torch.get_num_threads()
    if variant == "int8":
        torchao_quantization = require("torchao.quantization", "int8", "the torch int8 variant")
        torchao_quantization.quantize_(model, torchao_quantization.Int8DynamicActivationInt8WeightConfig())
        details["quantization"] = "torchao Int8DynamicActivationInt8Weight (per-token activations, per-channel weights)"
    # Every variant but eager (the plain Hugging Face reference) runs the last layer for the first token only.
    first_token = request.flag("first_token", default=variant != "eager")
    module: torch.nn.Module = first_token_model(model) if first_token else model
    details["last_layer"] = last_layer_note(module)
    if variant in ("compile", "int8"):
        module = torch.compile(module, dynamic=True)
        bucket_lengths = _compile_buckets(request.max_length)
        details["compile"] = "inductor, dynamic batch and length, lengths bucketed by %d" % COMPILE_BUCKET_STEP
    in_flight = check_depth(request.options.get("in_flight", default_in_flight(device)))
    details["in_flight"] = in_flight
    pin_inputs = request.flag("pin_inputs")
    details["pin_inputs"] = pin_inputs
    info = PredictorInfo(
        backend="torch",
        variant=variant,
        device=device,
        precision=precision,
        max_length=request.max_length,
        num_labels=int(request.config.num_labels),
        is_padded=True,
        bucket_lengths=bucket_lengths,
        thread_safe=variant not in ("compile", "int8"),
        details=details,
    )
    # torch 2.13's inductor computes int8 batches of one pair wrongly (random values, NaN with AVX2 code):
    # its batch-1 specialization of a one-row int8 matmul (the first-token layer). Two rows are right.
    predictor = TorchPredictor(
        module, info, autocast_dtype=autocast_dtype, in_flight=in_flight, hf_model=model, pin_inputs=pin_inputs,
        min_rows=2 if variant == "int8" else 1,
    )
    if bucket_lengths:
        _warm_up(predictor, bucket_lengths)
    return predictor
