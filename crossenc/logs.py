"""What the command line prints: crossenc's own progress and results, other libraries' warnings only.

The library configures no logging (a program using crossenc keeps its own set-up); ``crossenc.cli.main``
applies :func:`cli_logging` around a command and undoes it afterwards. By default (verbosity 0):

* crossenc: warnings and errors, plus the export progress lines of ``crossenc.exporters.locate``;
* other libraries: warnings and errors, except the known-harmless ones below, and no progress bars
  (transformers' "Loading weights" / "Writing model shards", NNCF's calibration bars);
* Python warnings on one line each, the known-harmless ones dropped.

``-v`` (1) drops nothing and leaves other libraries at their own defaults (their INFO lines, progress
bars and harmless warnings as they print them) and shows crossenc's INFO logs; ``-vv`` (2) sets every
logger to INFO and crossenc to DEBUG (a failed bench variant's traceback). Logs go to stderr, so stdout
keeps only a command's result (``crossenc predict`` JSON, the bench table), NNCF's included.

Where each noise came from, and how it is quieted here (each the library's own switch):

* NNCF logs every ignored node at INFO to *stdout* through its own handler, and sets that level when
  imported: ``nncf.set_log_level`` right after ``import nncf`` (a post-import hook), its handler moved
  to stderr; its progress bars draw on rich's global console, quieted.
* transformers logs a load report at WARNING and shows tqdm bars: ``set_verbosity_warning`` /
  ``disable_progress_bar`` after ``import transformers`` (its import resets its level).
* torchao logs "Failed to load .../torchao/_C_*.so" at WARNING on import (its CUDA / MX kernels on a
  CPU-only torch), and torch's ``_pytree`` warns that torchao registers Enum constants the deprecated
  way: dropped by a filter on those two loggers (HARMLESS_RECORDS).
* onnxruntime's quantizers log advice on the root logger: to pre-process the graph, and QDQ over the
  QOperator format that ``--quantize dynamic`` uses (measured faster here, docs/int8-recipes.md):
  dropped by a filter on the root logger (HARMLESS_RECORDS; records of named loggers are untouched).
* torch warns (``warnings``) that torchao's Int8Tensor lacks an AOT-autograd cache hash, and that
  ``LeafSpec`` is deprecated when a TreeSpec is copied during OpenVINO's torch.export: HARMLESS_WARNINGS.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

QUIET, VERBOSE, DEBUG = 0, 1, 2

# Loggers of crossenc that speak at INFO by default: what a first run is spending its minutes on.
PROGRESS_LOGGERS = ("crossenc.exporters.locate",)
# Its level doubles as the sentence-transformers default of show_progress_bar (a bar per predict at INFO).
QUIET_CROSSENC_LOGGERS = ("crossenc.cross_encoder",)

# (logger, message pattern): third-party warnings that say nothing a crossenc user can act on.
HARMLESS_RECORDS = (
    ("torchao", r"^Failed to load .*torchao[/\\]_C_"),
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported by torch\.compile"),
    ("root", r"^Please consider (to run )?pre-processing before quantization"),
    ("root", r"^Please use QuantFormat\.QDQ for activation type QInt8 and weight type QInt8"),
)
# (category, message pattern) for warnings.filterwarnings (a match at the start of the message).
HARMLESS_WARNINGS = (
    (UserWarning, r".* does not implement _stable_hash_for_caching"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)

TRANSIENT = "crossenc_transient"  # extra={TRANSIENT: True}: a "working on it" line the next message replaces


class _DropMatching(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


class _Formatter(logging.Formatter):
    """crossenc INFO as the bare message; warnings as ``warning: ...``; other libraries named."""

    def __init__(self, verbosity: int) -> None:
        super().__init__()
        self.verbosity = verbosity

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        level = record.levelname.lower()
        if record.name.startswith("crossenc"):
            text = message if record.levelno < logging.WARNING else f"{level}: {message}"
        elif record.name == "py.warnings":
            text = f"{level}: {message}"
        else:
            text = f"{record.name}: {level}: {message}"
        if record.exc_info and (self.verbosity >= VERBOSE or record.levelno >= logging.ERROR):
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (so a test's capture sees it). On a terminal a
    TRANSIENT record stays on its line until the next record replaces it: one line per export."""

    def __init__(self, verbosity: int) -> None:
        super().__init__()
        self.setFormatter(_Formatter(verbosity))
        self.verbosity = verbosity
        self.pending = False

    def settle(self) -> None:
        """Clear a transient line, so that what is printed next starts a line of its own."""
        if self.pending:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.pending = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.settle()
            stream = sys.stderr
            live = self.verbosity == QUIET and getattr(stream, "isatty", lambda: False)()
            if getattr(record, TRANSIENT, False) and live and "\n" not in text:
                stream.write(text[: max(shutil.get_terminal_size().columns - 1, 20)])
                self.pending = True
            else:
                stream.write(text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


_handler: _StderrHandler | None = None


def settle() -> None:
    """Before printing outside logging (a result row): end a transient progress line."""
    if _handler is not None:
        _handler.settle()


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None, *, verbosity: int = QUIET) -> None:
    """A Python warning as one log line: ``warning: Category: message`` (``-v`` adds where it was raised)."""
    if file is not None:
        file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    own = category.__module__.startswith("crossenc")
    where = f" ({filename}:{lineno})" if verbosity >= VERBOSE else ""
    text = f"{message}{where}" if own else f"{category.__name__}: {message}{where}"
    logging.getLogger("crossenc.warnings" if own else "py.warnings").warning("%s", text)


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Runs ``callback(module)`` right after a top-level module is first imported: some libraries set
    their logging up at import, so their own switches only hold when set afterwards."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[ModuleType], None]] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in self.callbacks:
            return None
        callbacks = self.callbacks
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module: ModuleType) -> None:
                module.__spec__.loader = module.__loader__ = loader  # the package sees its own loader
                loader.exec_module(module)
                callback = callbacks.pop(fullname, None)  # once, and not for a spec found but not loaded
                if callback is not None:
                    callback(module)

        spec.loader = _Loader()
        return spec


def _when_imported(hook: _PostImportHook, name: str, callback: Callable[[ModuleType], None]) -> None:
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
    else:
        hook.callbacks[name] = callback


@contextlib.contextmanager
def cli_logging(verbosity: int = QUIET) -> Iterator[None]:
    """Apply the command line's logging (see the module docstring) inside the block; restore it after."""
    global _handler
    with contextlib.ExitStack() as undo, warnings.catch_warnings():
        root = logging.getLogger()
        handler = _StderrHandler(verbosity)
        previous_handler, _handler = _handler, handler
        undo.callback(lambda: globals().__setitem__("_handler", previous_handler))
        root.addHandler(handler)
        undo.callback(root.removeHandler, handler)
        undo.callback(handler.settle)
        levels = {"": logging.INFO if verbosity >= DEBUG else logging.WARNING,
                  "crossenc": logging.DEBUG if verbosity >= DEBUG else logging.INFO if verbosity else logging.WARNING}
        levels |= {name: logging.INFO for name in PROGRESS_LOGGERS}
        if verbosity < DEBUG:
            levels |= {name: logging.WARNING for name in QUIET_CROSSENC_LOGGERS}
        for name, level in levels.items():
            logger = logging.getLogger(name)
            undo.callback(logger.setLevel, logger.level)
            logger.setLevel(level)
        warnings.showwarning = lambda *args, **kwargs: _show_warning(*args, **kwargs, verbosity=verbosity)
        if verbosity == QUIET:
            for name, pattern in HARMLESS_RECORDS:
                logger, dropper = logging.getLogger(name), _DropMatching(pattern)
                logger.addFilter(dropper)
                undo.callback(logger.removeFilter, dropper)
            for category, pattern in HARMLESS_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern, category=category)
        hook = _PostImportHook()
        sys.meta_path.insert(0, hook)
        undo.callback(lambda: hook in sys.meta_path and sys.meta_path.remove(hook))
        _when_imported(hook, "transformers", lambda module: _quiet_transformers(module, verbosity, undo))
        _when_imported(hook, "nncf", lambda module: _quiet_nncf(module, verbosity, undo))
        yield


def _quiet_transformers(transformers: ModuleType, verbosity: int, undo: contextlib.ExitStack) -> None:
    if verbosity == VERBOSE:
        return  # its own defaults
    hf_logging = transformers.utils.logging
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    undo.callback(hf_logging.set_verbosity, level)
    undo.callback(hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)
    hf_logging.set_verbosity(logging.INFO if verbosity >= DEBUG else logging.WARNING)
    (hf_logging.enable_progress_bar if verbosity >= DEBUG else hf_logging.disable_progress_bar)()


def _quiet_nncf(nncf: ModuleType, verbosity: int, undo: contextlib.ExitStack) -> None:
    from nncf.common.logging import logger as nncf_logger_module

    nncf_logger = nncf_logger_module.nncf_logger
    previous = nncf_logger.level
    undo.callback(nncf.set_log_level, previous)
    nncf.set_log_level(logging.INFO if verbosity >= VERBOSE else logging.WARNING)
    for handler in nncf_logger.handlers:  # it logs to stdout, which is the command's output
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.__stdout__):
            undo.callback(handler.setStream, handler.stream)
            handler.setStream(sys.stderr)
    try:
        import rich
    except ImportError:
        return
    console = rich.get_console()  # NNCF's calibration progress bars draw here
    undo.callback(setattr, console, "quiet", console.quiet)
    undo.callback(setattr, console, "stderr", console.stderr)
    console.quiet, console.stderr = verbosity == QUIET, True
