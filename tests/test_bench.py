"""Bench harness on the tiny model: quick run, JSON schema, autotune choice + cache, --compare."""

from __future__ import annotations

import copy
import json

import pytest

from crossenc.bench.compare import compare_results
from crossenc.bench.harness import ANCHOR_LABEL, BenchConfig, run_bench
from crossenc.bench.results import load_result, markdown_table, write_result
from crossenc.bench.workload import load_workload

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


def test_compare_passes_on_same_run_and_fails_on_injected_regression(quick_result):
    regressions, _ = compare_results(quick_result, quick_result, max_regression=0.15)
    assert regressions == []
    slower = copy.deepcopy(quick_result)
    row = next(r for r in slower["rows"] if r["label"] == "torch sdpa")
    row["ratio_vs_anchor"] *= 0.5
    regressions, _ = compare_results(quick_result, slower, max_regression=0.15)
    assert [(r.label, r.metric) for r in regressions] == [("torch sdpa", "pairs/s vs torch eager")]
    failing = copy.deepcopy(quick_result)
    next(r for r in failing["rows"] if r["label"] == "torch sdpa").update(status="error", error="boom")
    assert compare_results(quick_result, failing)[0], "a row that now fails must count as a regression"


def test_bench_cli_compare_exit_codes(tiny_model, tmp_path, quick_result):
    from crossenc.cli import main

    baseline = tmp_path / "baseline.json"
    inflated = copy.deepcopy(quick_result)
    for row in inflated["rows"]:
        if row["label"] == "torch sdpa":
            row["ratio_vs_anchor"] *= 1000  # the baseline claims sdpa was 1000x faster: the new run must fail
    baseline.write_text(json.dumps(inflated))
    args = ["bench", "--model", str(tiny_model), "--workload", "synthetic:2:10:2:20", "--variants", "torch:sdpa",
            "--repetitions", "1", "--latency-requests", "1", "--no-reference", "--out", str(tmp_path / "out")]
    assert main(args + ["--compare", str(baseline)]) == 1
    assert main(args + ["--compare", str(tmp_path / "out" / "bench.json")]) == 0
    assert (tmp_path / "out" / "bench.md").exists()


def test_autotune_picks_within_tier_and_caches(tiny_model, tmp_path, monkeypatch, quick_result):
    from crossenc import CrossEncoder
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
    assert autotune_module.pick(rows, "near")["variant"] == "bf16"
    assert autotune_module.pick(rows, "exact")["variant"] in {"eager", "sdpa"}
    with pytest.raises(ValueError, match="unknown accuracy tier"):
        autotune_module.pick(rows, "loose")

    source = ModelSource(path=tiny_model, name=str(tiny_model))
    assert autotune_module.choose_backend(source, "cpu") == autotune_module.SAFE_DEFAULT  # no profile yet
    chosen, path, result = autotune_module.autotune(str(tiny_model), "cpu", "exact", "synthetic:2:10:2:20",
                                                    ["torch:eager", "torch:sdpa"], repetitions=1)
    assert path.exists() and chosen["variant"] in {"eager", "sdpa"}
    encoder = CrossEncoder(str(tiny_model), backend="auto", accuracy="exact")
    assert (encoder.backend, encoder.predictor.info.variant) == (chosen["backend"], chosen["variant"])
