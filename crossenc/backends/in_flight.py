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

from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from crossenc.predictor import TokenBatch

Launch = Callable[[TokenBatch], torch.Tensor]  # device logits [rows, labels], possibly not computed yet


def check_depth(value: object) -> int:
    """``in_flight`` option: a positive number of batches queued on the device."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"in_flight={value!r}; expected a positive number of batches (1 = one at a time)")
    return value


def run_in_flight(launch: Launch, batches: Iterable[TokenBatch], device: torch.device, depth: int) -> Iterator[np.ndarray]:
    """fp32 logits of each batch, in order, with up to ``depth`` batches queued on ``device``."""
    if device.type != "cuda" or depth <= 1:
        for batch in batches:
            yield launch(batch).float().cpu().numpy()
        return
    pending: deque[tuple[torch.Tensor, torch.cuda.Event]] = deque()
    for batch in batches:
        logits = launch(batch).float()
        host = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(logits, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record(torch.cuda.current_stream(device))
        pending.append((host, copied))
        if len(pending) >= depth:
            yield _ready(*pending.popleft())
    while pending:
        yield _ready(*pending.popleft())


def _ready(host: torch.Tensor, copied: torch.cuda.Event) -> np.ndarray:
    copied.synchronize()
    return host.numpy()
