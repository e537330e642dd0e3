"""``crossenc export onnx|openvino MODEL OUT ...``: parse arguments, call the exporter, report loudly.

One subcommand per format. ``openvino`` is registered from ``crossenc.exporters.openvino``
(``add_openvino_arguments(subparser)`` and ``run_openvino(args)``) when that module imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from crossenc.exporters.onnx import OPTIMIZE_LEVELS, QUANTIZE_MODES

# format -> (module, function adding arguments, function running); each adds its own subparser arguments.
FORMATS: dict[str, tuple[str, str, str, str]] = {
    "onnx": ("crossenc.exporters.cli", "add_onnx_arguments", "run_onnx", "ONNX (+ ORT fusions, int8) for the onnx backend"),
    "openvino": ("crossenc.exporters.openvino", "add_openvino_arguments", "run_openvino", "OpenVINO IR for the openvino backend"),
}
DEFAULT_QUANTIZE = "blockwise"  # `--quantize` alone: the int8 variant's recipe (see onnx_quantize.DEFAULT_INT8_RECIPE)


def add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder, Hub id, or 'demo'")
    parser.add_argument("output", help="folder to write (replaced atomically, and only by a verified export: one that "
                        "fails verification is kept in OUTPUT.failed)")
    parser.add_argument("--optimize", choices=OPTIMIZE_LEVELS, default=None,
                        help="ORT graph optimization: O1 basic, O2 +fusions, O3 +GELU approx, O4 +fp16 (CUDA)")
    parser.add_argument("--quantize", nargs="?", const=DEFAULT_QUANTIZE, choices=QUANTIZE_MODES, default=None,
                        help=f"int8 quantization (alone: {DEFAULT_QUANTIZE}, the verified int8 recipe; implies --optimize O2)")
    parser.add_argument("--calibration", default=None, help="JSONL {query, documents} for static calibration")
    parser.add_argument("--verify-file", default=None, help="JSONL {query, documents} to verify on")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (O4 needs cuda)")
    parser.add_argument("--no-verify", action="store_true", help="skip verification (manifest says so)")


def _run_with_verification(export: Callable[[], object]) -> int:
    """Run ``export``; a failed verification prints a loud message and returns 1."""
    from crossenc.errors import VerificationFailed

    try:
        result = export()
    except VerificationFailed as failure:
        print(f"\n!!! VERIFICATION FAILED !!!\n{failure}", file=sys.stderr)
        return 1
    report = getattr(result, "report", None)
    status = report.summary() if report else (
        "verification skipped (--no-verify): backends refuse it unless backend_kwargs={'allow_unverified': True}"
    )
    print(f"wrote {result.path}: {status}")  # type: ignore[attr-defined]
    return 0


def run_onnx(args: argparse.Namespace) -> int:
    from crossenc.exporters.onnx import OnnxExportConfig, export_onnx

    optimize = args.optimize or ("O2" if args.quantize else None)
    config = OnnxExportConfig(
        opset=args.opset,
        optimize=optimize,
        quantize=args.quantize,
        calibration_file=args.calibration,
        verification_file=args.verify_file,
        device=args.device,
        verify=not args.no_verify,
    )
    return _run_with_verification(lambda: export_onnx(args.model, config, args.output))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register one subcommand per available format under ``crossenc export``."""
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, (module_name, add_name, run_name, help_text) in FORMATS.items():
        try:
            module = sys.modules[__name__] if module_name == __name__ else importlib.import_module(module_name)
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
