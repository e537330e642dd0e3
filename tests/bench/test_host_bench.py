"""`crossenc bench-host`: every host stage measured in child processes, files written atomically."""

from __future__ import annotations

import json

from crossenc.bench import host_pipeline


def test_measure_stages_reports_every_stage(tiny_model):
    result = host_pipeline.measure_stages(str(tiny_model), "synthetic:3:20:5:40", repetitions=1)
    stages = [row["stage"] for row in result["rows"]]
    assert stages[0].startswith("tokenize pairs (joint") and "collate packed, for packed backends" in stages
    assert result["pairs"] == 60 and all(row["pairs_per_s"] > 0 for row in result["rows"])


def test_bench_host_writes_results(tiny_model, tmp_path, capsys):
    code = host_pipeline.main(["--model", str(tiny_model), "--workload", "synthetic:2:10:5:30",
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
