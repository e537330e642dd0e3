"""Import optional heavy dependencies in one place, with an error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise ImportError telling which crossenc extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        reason = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"{module!r} is needed{reason} but is not installed: pip install 'crossenc[{extra}]'"
        ) from error
