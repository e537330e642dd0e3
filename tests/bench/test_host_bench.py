"""`crossenc bench-host`: every host stage measured in child processes, files written atomically."""

from __future__ import annotations

import json

import pytest

from crossenc.bench import host_pipeline


def test_measure_stages_reports_every_stage(tiny_model):
    result = host_pipeline.measure_stages(str(tiny_model), "synthetic:3:20:5:40", repetitions=1)
    stages = [row["stage"] for row in result["rows"]]
    assert stages[0].startswith("tokenize pairs (joint") and "collate packed, for packed backends" in stages
    assert result["pairs"] == 60 and all(row["pairs_per_s"] > 0 for row in result["rows"])
    assert [entry["workload"] for entry in result["tokenization"]] == ["synthetic:3:20:5:40"]


def test_tokenization_rows_per_engine_and_the_ceiling(tiny_model):
    pytest.importorskip("nanotoken")
    child = host_pipeline.measure_stages(str(tiny_model), "synthetic:2:10:5:30", 1, ("synthetic:1:5:3:9",))
    engines = [row["engine"] for row in child["tokenization"][0]["rows"]]
    assert engines == ["tokenizers", "nanotoken, cold cache", "nanotoken"] and child["engine"] == "nanotoken"
    result = {"runs": [child], "machine": {"cpu_model": "A CPU " * 20, "physical_cores": 2},
              "device_ceiling": {"pairs_per_s": 1e12, "source": "test"}}
    table = host_pipeline.tokenization_table(result)
    assert [row["workload"] for row in table] == ["synthetic:2:10:5:30"] * 3 + ["synthetic:1:5:3:9"] * 3
    assert table[0]["x_tokenizers"][child["rayon_threads"]] == 1.0
    summary = host_pipeline.terminal_summary(result)
    assert max(map(len, summary.splitlines())) <= 80 and "host tokenizer bounds" in summary
    result["device_ceiling"]["pairs_per_s"] = 1.0
    assert "device bounds" in host_pipeline.terminal_summary(result)
    assert "the device bounds" in "".join(host_pipeline.tokenization_markdown(result))


def test_device_ceiling_is_the_best_pre_tokenized_row(tmp_path):
    for name, rows in {"gpu-a": [{"name": "x, pre-tokenized", "pairs_per_s": 90.0},
                                 {"name": "x, pre-tokenized, big", "pairs_per_s": 120.0, "error": "oom"}],
                       "gpu-b": [{"name": "y, pre-tokenized", "pairs_per_s": 100.0}, {"name": "y", "pairs_per_s": 500}]
                       }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "gpu_check.json").write_text(json.dumps({"environment": {"gpu": name}, "rows": rows}))
    ceiling = host_pipeline.device_ceiling(None, tmp_path)
    assert ceiling["pairs_per_s"] == 100.0 and ceiling["source"].startswith("gpu-b")
    assert host_pipeline.device_ceiling("5000")["pairs_per_s"] == 5000.0
    assert host_pipeline.device_ceiling(None, tmp_path / "none") is None


def test_bench_host_writes_results(tiny_model, tmp_path, capsys):
    code = host_pipeline.main(["--model", str(tiny_model), "--workload", "synthetic:2:10:5:30",
                               "--second-workload", "synthetic:1:4:3:9", "--device-ceiling", "1000",
                               "--repetitions", "1", "--threads", "1", "--processes", "1", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "host.json").read_text())
    assert [run["rayon_threads"] for run in result["runs"]] == ["1"]
    assert [row["tokenizer_processes"] for row in result["feeding"]] == [0, 1]
    assert all(row["pairs_per_s"] > 0 for row in result["feeding"])
    in_process, one_worker = result["feeding"]
    assert in_process["workers"] is None
    facts = one_worker["workers"]
    assert facts["distinct_workers"] == 1 and facts["chunks"] * facts["pairs_per_chunk"] >= 10 * 5
    assert facts["peak_concurrency"] == 1  # one worker encodes one chunk at a time
    assert 0 < facts["chunk_cpu_over_wall"] <= 1.05 and facts["worker_pairs_per_s"] > 0
    assert 0 <= facts["first_start_ms"] <= facts["pass_wall_s"] * 1e3
    assert "Workers timing themselves" in (tmp_path / "host.md").read_text()
    assert result["command"].startswith("crossenc bench-host --model")
    assert "| tokenize pairs (joint, as Hugging Face) |" in (tmp_path / "host.md").read_text()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]
    assert "## Tokenization, per core and at N cores" in (tmp_path / "host.md").read_text()
    out = capsys.readouterr().out
    assert "Device ceiling" in out and max(map(len, out.splitlines())) <= 80
