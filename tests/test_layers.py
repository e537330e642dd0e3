"""crossenc's imports point one way (scripts/check_layers.py), and the check catches what it must."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "scripts" / "check_layers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_layers = _checker()


def test_imports_point_down_the_layer_table_without_cycles():
    assert check_layers.violations(ROOT) == []


@pytest.fixture
def planted(tmp_path):
    """A copy of the package to plant a violation in; returns (root, plant(relative path, code))."""
    shutil.copytree(ROOT / "crossenc", tmp_path / "crossenc", ignore=shutil.ignore_patterns("__pycache__", "data"))

    def plant(relative: str, code: str) -> None:
        path = tmp_path / "crossenc" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + code)

    assert check_layers.violations(tmp_path) == []  # the copy is clean before planting
    return tmp_path, plant


def test_a_function_local_upward_import_fails(planted):
    root, plant = planted
    plant("kernels/packing.py", "\n\ndef _planted():\n    from crossenc.bench.harness import run_bench\n")
    problems = check_layers.violations(root)
    assert any("crossenc.kernels.packing (kernels) imports crossenc.bench.harness (top) upward" in p for p in problems)


def test_an_upward_name_in_a_registry_fails(planted):
    root, plant = planted
    plant("backends/__init__.py", '\n_PLANTED = "crossenc.exporters.onnx:export_onnx"\n')
    problems = check_layers.violations(root)
    assert any("imports crossenc.exporters.onnx (exporters) upward by name" in p for p in problems)


def test_a_cycle_within_a_layer_fails(planted):
    root, plant = planted
    plant("paths.py", "\n\ndef _planted():\n    import crossenc.demo\n")  # demo imports paths
    assert any(p.startswith("import cycle between modules") and "crossenc.demo" in p
               for p in check_layers.violations(root))


def test_a_cycle_between_top_packages_fails(planted):
    root, plant = planted
    plant("bench/results.py", "\n\ndef _planted():\n    from crossenc.cli import main\n")  # the CLI imports bench
    assert any(p.startswith("import cycle between packages") and "crossenc.bench" in p and "crossenc.cli" in p
               for p in check_layers.violations(root))


def test_a_module_outside_the_table_fails(planted):
    root, plant = planted
    plant("unplaced.py", '"""Nowhere in LAYERS."""\n')
    assert "crossenc.unplaced: not in the layer table (scripts/check_layers.py LAYERS)" in check_layers.violations(root)


def test_services_sit_on_top_beside_the_cli_and_bench():
    top = len(check_layers.LAYERS) - 1
    for module in ("crossenc.serve", "crossenc.serve.app", "crossenc.distributed", "crossenc.distributed_ray",
                   "crossenc.cli", "crossenc.bench.harness", "crossenc.__init__"):
        assert check_layers.layer_of(module) == top, module
    assert check_layers.layer_of("crossenc.kernels.packing") < check_layers.layer_of("crossenc.backends.onnx_backend")
    assert check_layers.layer_of("crossenc.backends") < check_layers.layer_of("crossenc.exporters.onnx")
    assert check_layers.layer_of("crossenc.exporters") < check_layers.layer_of("crossenc.cross_encoder")


def test_top_level_names_are_lazy():
    """`import crossenc` loads no ML framework; its two entry points resolve to the real ones on access."""
    code = ("import sys, crossenc; assert 'torch' not in sys.modules and 'crossenc.loading' not in sys.modules; "
            "from crossenc.loading import load_predictor; from crossenc.cross_encoder import CrossEncoder; "
            "assert crossenc.load_predictor is load_predictor and crossenc.CrossEncoder is CrossEncoder")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
