"""``crossenc export onnx|openvino MODEL OUT ...``: one subcommand per format, each shaped alike.

Every format module has an ``<Format>ExportConfig``, ``export_<format>`` and, for this command,
``add_<format>_arguments(subparser)`` and ``run_<format>(args)``. A failed verification raises
VerificationFailed, which ``crossenc``'s entry point reports (exit 1) for every format the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# format -> (module, function adding arguments, function running, help)
FORMATS: dict[str, tuple[str, str, str, str]] = {
    "onnx": ("crossenc.exporters.onnx", "add_onnx_arguments", "run_onnx", "ONNX (+ ORT fusions, int8) for the onnx backend"),
    "openvino": ("crossenc.exporters.openvino", "add_openvino_arguments", "run_openvino", "OpenVINO IR for the openvino backend"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one subcommand per available format under ``crossenc export``."""
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, (module_name, add_name, run_name, help_text) in FORMATS.items():
        try:
            module = importlib.import_module(module_name)
            add, run_format = getattr(module, add_name), getattr(module, run_name)
        except (ImportError, AttributeError) as error:  # the format's module is missing or incomplete
            unavailable = formats.add_parser(name, help=f"{help_text} (unavailable: {error})")
            unavailable.add_argument("rest", nargs=argparse.REMAINDER)
            unavailable.set_defaults(export_handler=lambda _args, error=error: sys.exit(f"error: {error}"))
            continue
        subparser = formats.add_parser(name, help=help_text)
        add(subparser)
        subparser.set_defaults(export_handler=run_format)


def run(args: argparse.Namespace) -> int:
    return int(args.export_handler(args) or 0)
