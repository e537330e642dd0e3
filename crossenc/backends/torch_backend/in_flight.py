"""Keep several batches in flight on a CUDA device: launch the next batch before reading this one.

A torch predictor's ``predict_logits`` ends with ``logits.cpu()``, which waits for the GPU; the
host then builds the next batch (collate, pack, copy, kernel launches) while the GPU sits idle.
:func:`run_in_flight` instead launches batch ``k + 1`` (its host work overlapping batch ``k`` on
the GPU), copies each batch's logits into pinned host memory without blocking, and waits only
for the copy of the oldest batch once ``depth`` batches are queued. Every step is ordered on the
device's current stream, so graph replays and static buffers stay safe. On a CPU device (or with
``depth`` 1) it runs batch by batch, as ``predict_logits`` does.
"""

from __future__ import annotations

import numbers
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from crossenc.predictor import TokenBatch

DEFAULT_IN_FLIGHT = 1  # off a GPU batches run one at a time
CUDA_IN_FLIGHT = 2  # +1% to +13% end to end on an H100, never slower; 3 was not better (docs/gpu-defaults.md)
Launch = Callable[[TokenBatch], torch.Tensor]  # device logits [rows, labels], possibly not computed yet
Pending = Callable[[], np.ndarray]  # waits for one batch's copy, returns its host logits
StartCopy = Callable[[torch.Tensor], Pending]


def host_tensor(array: np.ndarray, pin: bool) -> torch.Tensor:
    """``array`` as a CPU tensor, copied into pinned memory when ``pin``.

    CUDA finishes the stream's earlier work before a copy from pageable memory, so the next
    batch cannot be queued behind the running one; from pinned memory the copy is queued too.
    torch's caching host allocator records the copy's event and reuses the pinned block only
    after it, so the tensor may be dropped right after the non-blocking copy is issued.
    """
    tensor = torch.from_numpy(array)
    return tensor.pin_memory() if pin else tensor


def to_device(array: np.ndarray, device: torch.device, pin: bool = False) -> torch.Tensor:
    """``array`` on ``device`` (non-blocking; through pinned memory when ``pin`` and ``device`` is CUDA)."""
    return host_tensor(array, pin and device.type == "cuda").to(device, non_blocking=True)


def default_in_flight(device: str | torch.device) -> int:
    """Batches kept in flight when ``in_flight`` is not given: :data:`CUDA_IN_FLIGHT` on CUDA, else 1."""
    return CUDA_IN_FLIGHT if torch.device(device).type == "cuda" else DEFAULT_IN_FLIGHT


def check_depth(value: object) -> int:
    """``in_flight`` option: a positive number of batches queued on the device."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"in_flight={value!r}; expected a positive number of batches (1 = one at a time)")
    return int(value)


def cuda_copy_to_host(logits: torch.Tensor) -> Pending:
    """Enqueue a non-blocking copy of ``logits`` into pinned memory; the callable waits for it alone."""
    host = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(logits, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record(torch.cuda.current_stream(logits.device))

    def ready() -> np.ndarray:
        copied.synchronize()
        return host.numpy()

    return ready


def run_in_flight(
    launch: Launch,
    batches: Iterable[TokenBatch],
    device: torch.device,
    depth: int,
    start_copy: StartCopy | None = None,
) -> Iterator[np.ndarray]:
    """fp32 logits of each batch, in order, with up to ``depth`` batches queued on ``device``.

    ``start_copy`` (default: :func:`cuda_copy_to_host` on CUDA) starts one batch's device-to-host
    copy and returns the callable that waits for it; without one, batches run one at a time.
    """
    start_copy = start_copy or (cuda_copy_to_host if device.type == "cuda" else None)
    if start_copy is None or depth <= 1:
        for batch in batches:
            yield launch(batch).float().cpu().numpy()
        return
    pending: deque[Pending] = deque()
    for batch in batches:
        pending.append(start_copy(launch(batch).float()))
        if len(pending) >= depth:
            yield pending.popleft()()
    while pending:
        yield pending.popleft()()


class InFlightPredictions:
    """Mixin giving a torch predictor ``predict_many``; it needs ``_launch``, ``predict_logits``,
    ``device`` and ``in_flight``. Off CUDA or at depth 1 it is ``predict_logits`` per batch."""

    device: torch.device
    in_flight: int
    _launch: Launch
    predict_logits: Callable[[TokenBatch], np.ndarray]

    @torch.inference_mode()
    def predict_many(self, batches: Iterable[TokenBatch]) -> Iterator[np.ndarray]:
        """Logits per batch, in order; on CUDA with ``in_flight`` > 1 the next batch launches before this one is read."""
        if self.device.type != "cuda" or self.in_flight <= 1:
            for batch in batches:
                yield self.predict_logits(batch)
            return
        yield from run_in_flight(self._launch, batches, self.device, self.in_flight)
