"""``crossenc support MODEL``: what each backend/variant does with one checkpoint on this machine.

Every variant this machine can run is loaded and scores a handful of pairs (odd ones included: an
empty document, a one-word query, a pair past max_length); each cell is ``ok`` with its max abs
logit error against the plain Hugging Face forward (torch eager fp32), ``refused`` with the reason
the backend gave at load time, or ``not here`` (an extra or a device this machine lacks). A
``crash`` (an error while scoring, or NaN) is a bug.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FP32_TOLERANCE = 1e-4  # fp32 variants must give the reference's scores (issue #14's bar)
REFERENCE = ("torch", "eager")
SAMPLE_PAIRS = (
    ("gnu debugger", "GDB is the GNU project debugger for C, C++ and other languages."),
    ("audio editor", "A puzzle game with falling blocks and a soundtrack."),
    ("", "an empty query still scores"),
    ("document left empty", ""),
    ("x", "y"),
    ("long text", " ".join(["the quick brown fox jumps over the lazy dog"] * 200)),
    ("python library for rank fusion", "Reciprocal rank fusion of several retrievers, in Python."),
    ("kernel driver", "Linux kernel driver for a network card, with firmware."),
)


@dataclass(frozen=True)
class Cell:
    backend: str
    variant: str
    status: str  # ok | refused | not here | crash
    max_abs_error: float | None = None
    precision: str | None = None
    detail: str = ""  # the reason for refused / not here / crash; what ran for ok
    seconds: float = 0.0


def all_cells() -> list[tuple[str, str]]:
    from crossenc.backends import BACKENDS

    return [(name, variant.name) for name, backend in BACKENDS.items() for variant in backend.variants]


def runnable_here(device: str) -> set[tuple[str, str]]:
    from crossenc.backends import BACKENDS

    return {(name, variant.name) for name, backend in BACKENDS.items() for variant in backend.runnable(device)}


def support_matrix(model: str, device: str = "cpu", cells: list[tuple[str, str]] | None = None,
                   pairs: tuple[tuple[str, str], ...] = SAMPLE_PAIRS, **load_options: Any) -> list[Cell]:
    """One :class:`Cell` per backend/variant (``cells``: all known ones)."""
    from crossenc import CrossEncoder

    reference = CrossEncoder(model, backend=REFERENCE[0], variant=REFERENCE[1], device=device, **load_options)
    expected = reference.predict_logits(list(pairs))
    here = runnable_here(device)
    results = []
    for backend, variant in cells or all_cells():
        if (backend, variant) not in here:
            results.append(Cell(backend, variant, "not here", detail=f"not runnable on this machine's {device}"))
            continue
        results.append(_try(model, device, backend, variant, pairs, expected, load_options))
    return results


def _try(model, device, backend, variant, pairs, expected, load_options) -> Cell:
    from crossenc import CrossEncoder
    from crossenc.errors import VerificationFailed

    start = time.perf_counter()
    try:
        encoder = CrossEncoder(model, backend=backend, variant=variant, device=device, **load_options)
    except ImportError as error:
        return Cell(backend, variant, "not here", detail=_line(error))
    except (ValueError, NotImplementedError, VerificationFailed) as error:  # an export missing its tolerance too
        return Cell(backend, variant, "refused", detail=_line(error), seconds=time.perf_counter() - start)
    try:
        logits = encoder.predict_logits(list(pairs))
    except Exception as error:  # noqa: BLE001 - any scoring failure is the bug this tool reports
        return Cell(backend, variant, "crash", detail=f"{type(error).__name__}: {_line(error)}")
    info = encoder.info()
    error = float(np.abs(logits - expected).max())
    details = info.get("details", {})
    ran = ", ".join(f"{key}={details[key]}" for key in ("attn_implementation", "last_layer") if key in details)
    status = "ok" if np.isfinite(error) else "crash"
    return Cell(backend, variant, status, error, info.get("precision"), ran, time.perf_counter() - start)


def parse_cells(text: str | None) -> list[tuple[str, str]] | None:
    """``"torch:sdpa,onnx:plain"`` -> cells; ValueError naming an unknown one."""
    if not text:
        return None
    known = set(all_cells())
    cells = [tuple(item.strip().split(":", 1)) for item in text.split(",") if item.strip()]
    unknown = [":".join(cell) for cell in cells if cell not in known]
    if unknown:
        raise ValueError(f"unknown backend:variant {unknown}; known: {sorted(':'.join(c) for c in known)}")
    return cells  # type: ignore[return-value]


def _line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def format_matrix(cells: list[Cell], width: int = 80) -> str:
    """The matrix as a terminal table of at most ``width`` columns."""
    lines = [f"{'backend':9}{'variant':12}{'status':10}{'max |d|':>9}  detail"]
    for cell in cells:
        error = f"{cell.max_abs_error:9.1e}" if cell.max_abs_error is not None else f"{'-':>9}"
        line = f"{cell.backend:9}{cell.variant:12}{cell.status:10}{error}  {cell.detail}"
        lines.append(line if len(line) <= width else line[: width - 3] + "...")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder, Hub id, or 'demo'")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print the matrix as JSON")
    parser.add_argument("--variants", default=None, help="only these cells, e.g. torch:sdpa,onnx:plain")


def run(args: argparse.Namespace) -> int:
    from crossenc.demo import expand_alias

    cells = support_matrix(expand_alias(args.model), args.device, parse_cells(args.variants))
    if args.json:
        json.dump([asdict(cell) for cell in cells], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_matrix(cells))
        counts = {status: sum(cell.status == status for cell in cells) for status in ("ok", "refused", "not here", "crash")}
        print(", ".join(f"{count} {status}" for status, count in counts.items()))
    return 1 if any(cell.status == "crash" for cell in cells) else 0
