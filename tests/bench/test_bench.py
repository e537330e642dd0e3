"""Bench harness on the tiny model: quick run, JSON schema, autotune choice + cache; --compare on made-up results."""

from __future__ import annotations

import copy
import json
import re

import pytest

from crossenc.bench.baseline import BaselineError
from crossenc.bench.regression import compare_results
from crossenc.bench.harness import ANCHOR_LABEL, REFERENCE_LABEL, BenchConfig, run_bench
from crossenc.bench.results import load_result, markdown_table, write_result
from crossenc.workloads import load_workload

ROW_KEYS = {"label", "engine", "backend", "variant", "device", "status", "throughput", "latency", "quality",
            "padding_efficiency", "peak_rss_mb", "load_seconds", "ratio_vs_reference", "ratio_vs_anchor", "info"}


@pytest.fixture(scope="module")
def quick_result(tiny_model):
    config = BenchConfig(model=str(tiny_model), workload="synthetic:3:20:2:40", repetitions=2, latency_requests=3,
                         variants=["torch:eager", "torch:sdpa"])
    return run_bench(config, load_workload(config.workload))


def test_result_schema(quick_result):
    assert quick_result["schema_version"] == 1
    assert {"machine", "versions", "workload", "rows", "config", "created"} <= set(quick_result)
    assert quick_result["machine"]["physical_cores"] >= 1
    labels = [row["label"] for row in quick_result["rows"]]
    assert labels[0] == ANCHOR_LABEL and "torch sdpa" in labels
    assert "sentence-transformers torch fp32" in labels
    for row in quick_result["rows"]:
        assert ROW_KEYS <= set(row), row.get("error")
        assert row["status"] == "ok", row["error"]
        assert row["throughput"]["pairs_per_s"] > 0 and row["throughput"]["repetitions"] == 2
        assert row["latency"]["p50_ms"] <= row["latency"]["p99_ms"]
        assert row["quality"]["max_abs_error"] < 1e-4, "every fp32 torch row must match the anchor"
    assert quick_result["rows"][0]["ratio_vs_anchor"] == pytest.approx(1.0)


def test_results_files(quick_result, tmp_path):
    paths = write_result(quick_result, tmp_path, "bench")
    assert load_result(paths["json"])["rows"] == json.loads(json.dumps(quick_result["rows"]))
    table = paths["md"].read_text()
    assert "| torch sdpa |" in table and "x ST fp32" in table
    assert paths["png"].stat().st_size > 1000


def test_error_rows_do_not_sink_the_run(quick_result):
    broken = copy.deepcopy(quick_result)
    broken["rows"][1] |= {"status": "error", "error": "RuntimeError: boom", "throughput": None}
    assert "error: RuntimeError: boom" in markdown_table(broken)


def test_autotune_picks_within_tier_and_caches(tiny_model, tmp_path, monkeypatch, quick_result):
    from crossenc import CrossEncoder
    from crossenc import profiles
    from crossenc.bench import autotune as autotune_module
    from crossenc.model_source import ModelSource

    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    rows = copy.deepcopy(quick_result["rows"])
    sdpa_row = next(row for row in rows if row["label"] == "torch sdpa")
    fake_fast_inexact = copy.deepcopy(sdpa_row) | {"label": "torch bf16", "variant": "bf16"}
    fake_fast_inexact["throughput"] = {**fake_fast_inexact["throughput"], "pairs_per_s": 1e9}
    fake_fast_inexact["quality"] = {**fake_fast_inexact["quality"], "max_abs_error": 0.05, "spearman": 0.9995,
                                    "top10_agreement": 1.0}
    rows.append(fake_fast_inexact)
    assert profiles.pick(rows, "near")["variant"] == "bf16"
    assert profiles.pick(rows, "exact")["variant"] in {"eager", "sdpa"}
    with pytest.raises(ValueError, match="unknown accuracy tier"):
        profiles.pick(rows, "loose")

    source = ModelSource(path=tiny_model, name=str(tiny_model))
    assert profiles.choose_backend(source, "cpu") == profiles.SAFE_DEFAULT  # no profile yet
    chosen, path, result = autotune_module.autotune(str(tiny_model), "cpu", "exact", "synthetic:2:10:2:20",
                                                    ["torch:eager", "torch:sdpa"], repetitions=1)
    assert path.exists() and chosen["variant"] in {"eager", "sdpa"}
    encoder = CrossEncoder(str(tiny_model), backend="auto", accuracy="exact")
    assert (encoder.backend, encoder.predictor.info.variant) == (chosen["backend"], chosen["variant"])


# --compare: made-up results (no timing); pairs/s are compared as ratios to the in-run torch eager row.

CLI_WORKLOAD = "synthetic:2:10:2:20"
RATIOS = {ANCHOR_LABEL: 1.0, REFERENCE_LABEL: 0.7, "torch sdpa": 1.3, "onnx int8": 1.5}
SLOWER_SDPA = "torch sdpa: pairs/s vs torch eager 1.300 -> 0.650 (allowed >= 1.105, -50.0%)"  # ratio 1.3 -> 0.65


def _fake_row(label: str, ratio: float, anchor_rate: float, device: str) -> dict:
    engine = "sentence-transformers" if label == REFERENCE_LABEL else "crossenc"
    backend, variant = label.split()[-2:]
    rate = anchor_rate * ratio
    return {
        "label": label, "engine": engine, "backend": backend, "variant": variant, "device": device,
        "status": "ok", "error": None,
        "throughput": {"pairs_per_s": rate, "pairs_per_s_min": rate, "pairs_per_s_max": rate, "repetitions": 1},
        "latency": {"p50_ms": 10.0, "p99_ms": 12.0},
        "quality": {"max_abs_error": 0.0, "spearman": 1.0, "top10_agreement": 1.0, "mrr_at_10": 0.1},
        "padding_efficiency": 0.9, "peak_rss_mb": 500.0, "load_seconds": 0.1,
        "ratio_vs_reference": ratio / RATIOS[REFERENCE_LABEL], "ratio_vs_anchor": ratio, "info": {},
    }


def fake_result(ratios: dict[str, float] | None = None, workload: str = CLI_WORKLOAD, device: str = "cpu",
                anchor_rate: float = 50.0) -> dict:
    """A schema-1 result: the anchor, the sentence-transformers reference and crossenc rows at ``ratios``."""
    measured = load_workload(workload)
    return {
        "schema_version": 1, "created": "2026-01-01T00:00:00+00:00", "command": "crossenc bench",
        "config": {"model": "/cache/crossenc-demo", "device": device, "workload": workload, "batch_size": 32,
                   "max_tokens": None, "repetitions": 1, "latency_requests": 1, "variants": None,
                   "include_reference": True},
        "machine": {"cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "fma"], "physical_cores": 2, "logical_cpus": 2,
                    "platform": "Linux", "python": "3.11.7", "gpu": None},
        "versions": {"crossenc": "0.1.0", "torch": "2.13.0+cpu"},
        "workload": {"name": measured.name, "queries": len(measured.queries), "pairs": measured.num_pairs,
                     "tokens_mean": 20.0, "tokens_p50": 20.0, "tokens_p95": 30.0, "tokens_max": 40,
                     "random_order_mrr_at_10": 0.03},
        "reference": REFERENCE_LABEL, "anchor": ANCHOR_LABEL,
        "rows": [_fake_row(label, ratio, anchor_rate, device) for label, ratio in (RATIOS | (ratios or {})).items()],
    }


def _row(result: dict, label: str) -> dict:
    return next(row for row in result["rows"] if row["label"] == label)


def _fail_anchor(result: dict) -> dict:
    _row(result, ANCHOR_LABEL).update(status="error", error="RuntimeError: boom", throughput=None)
    for row in result["rows"]:
        row["ratio_vs_anchor"] = None
    return result


def test_compare_tracks_crossenc_rows_as_ratios_to_the_anchor():
    baseline = fake_result()
    same = compare_results(baseline, fake_result(anchor_rate=5.0))  # a 10x slower machine, same ratios
    assert same.regressions == [] and same.compared == ["torch sdpa", "onnx int8"]
    assert compare_results(baseline, fake_result({"torch sdpa": 1.3 * 0.9})).regressions == []  # within 15%
    slower = compare_results(baseline, fake_result({"torch sdpa": 0.65}))
    assert [(r.label, r.metric) for r in slower.regressions] == [("torch sdpa", "pairs/s vs torch eager")]
    assert slower.regressions[0].describe() == SLOWER_SDPA
    reference_broken = fake_result({REFERENCE_LABEL: 0.01})
    _row(reference_broken, REFERENCE_LABEL).update(quality={"spearman": 0.1, "top10_agreement": 0.1})
    assert compare_results(baseline, reference_broken).regressions == [], "the reference rows are not the product"


def test_compare_quality_failures_and_missing_rows():
    baseline = fake_result()
    worse = fake_result()
    _row(worse, "onnx int8")["quality"]["spearman"] = 0.99
    assert [(r.label, r.metric) for r in compare_results(baseline, worse).regressions] == [("onnx int8", "spearman")]
    assert compare_results(baseline, worse, max_quality_drop=0.02).regressions == []
    failing = fake_result()
    _row(failing, "torch sdpa").update(status="error", error="RuntimeError: boom", throughput=None,
                                       ratio_vs_anchor=None)
    (regression,) = compare_results(baseline, failing).regressions
    assert regression.describe() == "torch sdpa: status: error: RuntimeError: boom"
    partial = fake_result()
    partial["rows"] = [row for row in partial["rows"] if row["label"] != "onnx int8"]
    partial["rows"].append(_fake_row("openvino int8", 3.0, 50.0, "cpu"))
    comparison = compare_results(baseline, partial)
    assert comparison.regressions == [] and comparison.compared == ["torch sdpa"]
    assert comparison.notes == ["onnx int8: not measured in this run (skipped)",
                                "openvino int8: no baseline figures (not checked)"]
    (missing,) = compare_results(baseline, partial, require_all=True).regressions  # e.g. onnxruntime uninstalled
    assert missing.describe() == "onnx int8: status: not measured in this run"


def test_compare_with_zero_baseline_figures():
    baseline = fake_result({"torch sdpa": 0.0})
    _row(baseline, "onnx int8")["quality"]["spearman"] = 0.0
    current = fake_result()
    _row(current, "onnx int8")["quality"]["spearman"] = -0.5
    (regression,) = compare_results(baseline, current).regressions
    assert regression.change is None
    assert regression.describe() == "onnx int8: spearman 0.000 -> -0.500 (allowed >= -0.005)"


@pytest.mark.parametrize("change, message", [
    ({"workload": "synthetic:3:10:2:20"},
     "workload differs: baseline synthetic:2:10:2:20 (synthetic-2-20w, 2 queries, 20 pairs), "
     "this run synthetic:3:10:2:20 (synthetic-2-20w, 3 queries, 30 pairs)"),
    ({"device": "cuda"}, "device differs: baseline 'cpu', this run 'cuda'"),
])
def test_compare_refuses_another_workload_or_device(change, message):
    with pytest.raises(BaselineError, match=f"cannot compare with the baseline: {re.escape(message)}$"):
        compare_results(fake_result(), fake_result(**change))
    current = fake_result()
    current["config"]["batch_size"] = 64
    with pytest.raises(BaselineError, match="batch_size differs: baseline 32, this run 64"):
        compare_results(fake_result(), current)


def test_compare_warns_on_another_machine_or_library_versions():
    current = fake_result()
    current["machine"] |= {"cpu_model": "Intel Xeon", "cpu_flags": ["avx2", "avx512f", "fma"]}
    current["versions"]["torch"] = "2.14.0+cpu"
    comparison = compare_results(fake_result(), current)
    assert comparison.regressions == []
    assert comparison.warnings == [
        "machine cpu_model differs: baseline 'AMD EPYC', this run 'Intel Xeon'",
        "machine cpu_flags differs: only in the baseline [], only in this run ['avx512f']",
        "torch version differs: baseline '2.13.0+cpu', this run '2.14.0+cpu'",
    ]


def test_compare_reports_a_failed_anchor_as_an_error():
    with pytest.raises(BaselineError, match="anchor row 'torch eager' failed in the current run .RuntimeError: boom."):
        compare_results(fake_result(), _fail_anchor(fake_result()))
    with pytest.raises(BaselineError, match="anchor row 'torch eager' failed in the baseline"):
        compare_results(_fail_anchor(fake_result()), fake_result())


def test_compare_reads_real_bench_results(quick_result):
    """Schema check: a real run marks its rows as compare expects (not a regression test: same run twice)."""
    comparison = compare_results(quick_result, quick_result)
    assert comparison.compared == ["torch sdpa"] and comparison.regressions == [] and comparison.warnings == []


@pytest.fixture
def fake_bench(monkeypatch):
    """`crossenc bench` whose run_bench returns fake_result(runs["ratios"]) instead of measuring."""
    from crossenc.bench import harness

    runs: dict = {"ratios": None, "calls": 0}

    def run(config, workload, on_row=None):
        runs["calls"] += 1
        return fake_result(runs["ratios"], workload=config.workload, device=config.device, anchor_rate=7.0)

    monkeypatch.setattr(harness, "run_bench", run)
    return runs


def _bench(tmp_path, *extra: str) -> int:
    from crossenc.cli import main

    return main(["bench", "--model", "unused", "--workload", CLI_WORKLOAD, "--out", str(tmp_path / "out"), *extra])


def _baseline_in_output_folder(tmp_path, result: dict | None = None):
    path = tmp_path / "out" / "bench.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(result or fake_result()))
    return path, path.read_bytes()


def test_bench_cli_refuses_to_overwrite_its_baseline(tmp_path, fake_bench, capsys):
    baseline, saved = _baseline_in_output_folder(tmp_path)
    assert _bench(tmp_path, "--compare", str(baseline)) == 2
    error = capsys.readouterr().err
    assert f"this run would write {baseline}, which is the baseline --compare {baseline}" in error
    assert fake_bench["calls"] == 0 and baseline.read_bytes() == saved


def test_bench_cli_fails_a_slower_run(tmp_path, fake_bench, capsys):
    baseline, saved = _baseline_in_output_folder(tmp_path)
    fake_bench["ratios"] = {"torch sdpa": 0.65}
    assert _bench(tmp_path, "--compare", str(baseline), "--no-write") == 1
    assert f"REGRESSION {SLOWER_SDPA}" in capsys.readouterr().err
    assert _bench(tmp_path, "--compare", str(baseline), "--stem", "ci") == 1
    assert (tmp_path / "out" / "ci.json").exists() and baseline.read_bytes() == saved


def test_bench_cli_passes_a_run_as_fast_as_its_baseline(tmp_path, fake_bench, capsys):
    baseline, saved = _baseline_in_output_folder(tmp_path)
    assert _bench(tmp_path, "--compare", str(baseline), "--stem", "ci") == 0
    assert f"no regression beyond 15% pairs/s or 0.005 quality in 2 row(s) against {baseline}" in capsys.readouterr().err
    assert (tmp_path / "out" / "ci.md").exists() and baseline.read_bytes() == saved


def test_bench_cli_quality_threshold(tmp_path, fake_bench):
    worse = fake_result()
    _row(worse, "onnx int8")["quality"]["spearman"] = 1.01  # the baseline was better by 0.01
    baseline, _ = _baseline_in_output_folder(tmp_path, worse)
    assert _bench(tmp_path, "--compare", str(baseline), "--no-write") == 1
    assert _bench(tmp_path, "--compare", str(baseline), "--no-write", "--max-quality-drop", "0.02") == 0


def test_bench_cli_unusable_baseline_fails_before_running(tmp_path, fake_bench, capsys):
    _baseline_in_output_folder(tmp_path)  # the file this run would write exists: no samefile() on a missing one
    missing = tmp_path / "missing.json"
    assert _bench(tmp_path, "--compare", str(missing)) == 2
    assert f"error: baseline {missing} does not exist" in capsys.readouterr().err
    invalid = tmp_path / "invalid.json"
    invalid.write_text("{")
    assert _bench(tmp_path, "--compare", str(invalid)) == 2
    assert f"error: baseline {invalid} is not usable" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps(fake_result(workload="synthetic:3:10:2:20")))
    assert _bench(tmp_path, "--compare", str(other)) == 2
    error = capsys.readouterr().err
    assert f"cannot compare with {other}: workload differs: baseline synthetic:3:10:2:20" in error
    assert f"this run {CLI_WORKLOAD} (synthetic-2-20w, 2 queries, 20 pairs)" in error
    assert fake_bench["calls"] == 0


def test_bench_cli_failed_anchor_is_an_error(tmp_path, fake_bench, capsys):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(_fail_anchor(fake_result())))
    assert _bench(tmp_path, "--compare", str(baseline), "--no-write") == 2
    assert "error: the anchor row 'torch eager' failed in the baseline (RuntimeError: boom)" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--max-regression", "0"), ("--max-regression", "1"),
                                           ("--max-regression", "-0.1"), ("--max-regression", "15%"),
                                           ("--max-quality-drop", "-0.01")])
def test_bench_cli_thresholds_are_range_checked(tmp_path, fake_bench, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        _bench(tmp_path, option, value)
    assert exit_info.value.code == 2 and f"argument {option}:" in capsys.readouterr().err
    assert fake_bench["calls"] == 0
