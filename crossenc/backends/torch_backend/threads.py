"""Intra-op threads on a CPU: one per physical core, set once for every torch variant."""

from __future__ import annotations

import threading

import torch

from crossenc.hardware import physical_cores

_threads_lock = threading.Lock()


def set_default_threads() -> None:
    """Use one intra-op thread per physical core unless the user already chose."""
    with _threads_lock:
        cores = physical_cores()
        if torch.get_num_threads() != cores:
            torch.set_num_threads(cores)
