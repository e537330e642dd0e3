"""Whether Triton can be used here, checked once, without importing it at crossenc import time."""

from __future__ import annotations

import functools
import importlib
import os


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when ``import triton`` works (the ``gpu`` extra: ``pip install 'crossenc[gpu]'``)."""
    try:
        importlib.import_module("triton")
        importlib.import_module("triton.language")
    except Exception:  # broken wheels raise more than ImportError
        return False
    return True


def interpreter_enabled() -> bool:
    """True under ``TRITON_INTERPRET=1``: kernels run on CPU tensors (tests only, slow)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def next_power_of_2(value: int) -> int:
    return 1 << max(0, int(value) - 1).bit_length()
