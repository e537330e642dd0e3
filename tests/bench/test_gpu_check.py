"""The GPU check script's CPU-side parts: its row plan, the host-tokenizer row and the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossenc.bench import gpu_check


def test_row_plan_names_are_unique_and_start_with_the_reference(tiny_model):
    names = [name for name, _, _ in gpu_check.row_plan(tiny_model)]
    assert len(names) == len(set(names))
    assert names[:3] == ["crossenc torch sdpa fp32", gpu_check.BASELINE_ROW, gpu_check.HOST_TOKENIZER_ROW]
    assert gpu_check.KERNEL_CHECK_ROW in names


def test_host_tokenizer_row_measures_pairs_per_second(tiny_model, pairs, tmp_path):
    row = gpu_check.tokenizer_only_row(tiny_model, pairs, reps=2, started=0.0)
    assert "error" not in row, row.get("traceback")
    assert row["pairs"] == len(pairs) and row["pairs_per_s"] > 0 and len(row["seconds"]) == 2
    assert row["details"]["mode"] == "split" and row["details"]["joint_pairs_per_s"] > 0
    recorder = gpu_check.Recorder(tmp_path, {"gpu": "none"})
    recorder.add(row)
    assert json.loads((tmp_path / "gpu_check.json").read_text())["rows"][0]["name"] == gpu_check.HOST_TOKENIZER_ROW
    assert gpu_check.HOST_TOKENIZER_ROW in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_refuses_to_run_without_cuda(tmp_path):
    with pytest.raises(SystemExit, match="CUDA"):
        gpu_check.main(["--out", str(tmp_path)])


def test_encoder_flops_by_hand():
    from crossenc.bench.model_flops import encoder_flops

    # One sequence of 3 tokens, hidden 2, intermediate 4, 2 layers.
    dense = 2 * (4 * 2 * 2 + 2 * 2 * 4)  # 64 per token per layer
    full_layer = 3 * dense + 4 * 3 * 3 * 2  # 192 + 72
    last = 3 * 2 * (2 * 2 * 2) + 2 * (2 * 2 * 2 + 2 * 2 * 4) + 4 * 3 * 2  # K,V for all + one token + one query row
    assert encoder_flops([3], 2, 4, 2, first_token=False) == 2 * full_layer
    assert encoder_flops([3], 2, 4, 2) == full_layer + last
    assert encoder_flops([3, 3], 2, 4, 2) == 2 * (full_layer + last)


def test_gflop_per_pair_and_the_tflops_column(tiny_model, pairs, tmp_path):
    gflop = gpu_check.gflop_per_pair(tiny_model, pairs)
    assert gflop is not None and 0 < gflop < 1e-2  # a 2-layer, 32-wide model
    assert gpu_check.gflop_per_pair(tmp_path / "missing", pairs) is None
    recorder = gpu_check.Recorder(tmp_path, {"gpu": "none", "gflop_per_pair": 2.0})
    recorder.add({"name": "row", "pairs_per_s": 50_000.0, "elapsed_s": 1.0})
    assert "| row | 50000 |  | 100 |" in (tmp_path / "gpu_check.md").read_text()


def test_prepare_gpu_check_writes_an_fp16_copy_that_loads_upcast(tiny_model, pairs, tmp_path):
    import importlib.util
    from pathlib import Path

    from safetensors import safe_open

    from crossenc import CrossEncoder

    path = Path(__file__).parents[2] / "scripts" / "prepare_gpu_check.py"
    spec = importlib.util.spec_from_file_location("prepare_gpu_check", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    target = tmp_path / "carry" / "fp16"
    assert script.main(["--source", str(tiny_model), "--out", str(target)]) == 0
    with safe_open(str(target / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}
    assert json.loads((target / "config.json").read_text())["dtype"] == "float32"
    copy, original = CrossEncoder(str(target)), CrossEncoder(str(tiny_model))
    assert copy.info()["precision"] == "fp32"
    assert {parameter.dtype for parameter in copy.predictor.module.parameters()} == {torch.float32}
    np.testing.assert_allclose(copy.predict(pairs), original.predict(pairs), atol=5e-3)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_weights_dtype_and_report_header(tiny_model, tmp_path):
    assert gpu_check.weights_dtype(tiny_model) == "F32"
    recorder = gpu_check.Recorder(tmp_path, {"gpu": "none", "gflop_per_pair": 2.0, "model": "m", "weights_dtype": "F16"})
    recorder.add({"name": gpu_check.HOST_TOKENIZER_ROW, "pairs_per_s": 9000.0, "elapsed_s": 1.0})
    text = (tmp_path / "gpu_check.md").read_text()
    assert "Model m (F16 weights)" in text
    assert f"| {gpu_check.HOST_TOKENIZER_ROW} | 9000 |  |  |" in text  # no ratio, no TFLOP/s: no model ran


@pytest.mark.parametrize("first_token", [False, True])
def test_encoder_flops_match_torch_flop_counter(first_token):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig, BertForSequenceClassification

    from crossenc.bench.model_flops import encoder_flops
    from crossenc.backends.torch_backend.first_token import first_token_model

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, num_labels=1, attn_implementation="eager")
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    module = first_token_model(model) if first_token else model
    ids = torch.randint(5, 50, (1, 11))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(input_ids=ids, attention_mask=torch.ones_like(ids))
    head = 2 * 32 * 32 + 2 * 32 * 1  # pooler and classifier, left out of the count
    assert counter.get_total_flops() - head == encoder_flops([11], 32, 64, 3, first_token=first_token)


def test_checkpoint_writer_replaces_and_keeps(tiny_model, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from crossenc.checkpoint_writer import write_checkpoint

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    target = tmp_path / "out"
    write_checkpoint(model, tokenizer, target, {"mark": 1}, overwrite=False)
    with pytest.raises(FileExistsError):
        write_checkpoint(model, tokenizer, target, {"mark": 2}, overwrite=False)  # exists: kept
    assert json.loads((target / "config.json").read_text())["mark"] == 1
    write_checkpoint(model, tokenizer, target, {"mark": 3}, overwrite=True)
    assert json.loads((target / "config.json").read_text())["mark"] == 3
    import os

    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~mask  # a normal folder, not mkdtemp's private 0700
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_main_keeps_rows_and_skips_the_rest_after_a_cuda_fault(tiny_model, tmp_path, monkeypatch):
    """A row whose clean-up fails (a lasting CUDA fault) is recorded, and no later row runs on the broken context."""
    ran = []

    def scorer(name, close_error=None):
        def factory():
            ran.append(name)

            def score(pairs):
                return np.zeros(len(pairs), dtype=np.float32)

            if close_error:
                def close():
                    raise RuntimeError(close_error)

                score.close = close
            return score, {"details": {}}

        return factory

    plan = [("first", scorer("first"), {}), ("faulty", scorer("faulty", "CUDA error: illegal memory access"), {}),
            ("later", scorer("later"), {})]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "environment", lambda: {"gpu": "fake"})
    monkeypatch.setattr(gpu_check, "row_plan", lambda path: plan)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert gpu_check.main(["--out", str(tmp_path), "--model", str(tiny_model), "--big-queries", "2", "--reps", "1"]) == 0
    rows = {row["name"]: row for row in json.loads((tmp_path / "gpu_check.json").read_text())["rows"]}
    assert ran == ["first", "faulty"]
    assert rows["first"]["pairs_per_s"] > 0 and "error" not in rows["first"]
    assert "illegal memory access" in rows["faulty"]["cleanup_error"]
    assert rows["later"]["error"].startswith("skipped: the CUDA context failed after 'faulty'")
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_main_refuses_a_folder_without_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit, match="no config.json"):
        gpu_check.main(["--out", str(tmp_path / "out"), "--model", str(tmp_path)])


def test_recorder_writes_the_environment_before_any_row(tmp_path):
    gpu_check.Recorder(tmp_path, {"gpu": "fake"})
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == {"environment": {"gpu": "fake"}, "rows": []}


def test_kernel_profile_writes_a_table(tiny_model, pairs, tmp_path):
    target = tmp_path / "kernel_profile.txt"
    gpu_check.write_kernel_profile(tiny_model, pairs, target, device="cpu")
    text = target.read_text()
    assert text.startswith(f"{len(pairs)} pairs, one pass"), text[:300]
    assert "aten::" in text


def test_rows_run_what_their_names_say(tiny_model, monkeypatch):
    """CUDA defaults (graphs and Triton for packed-fp16, 2 in flight) must not leak into rows that do not name them:
    each row's options are resolved as a CUDA load would resolve them, then compared with its name."""
    from crossenc.backends.torch_backend.packed import _parse_options

    calls = {}

    def capture(name):
        def scorer(path, variant, options, *args, **kwargs):
            calls[name] = (variant, options)
            return None, {}

        return scorer

    checked = 0
    for name, factory, _ in gpu_check.row_plan(tiny_model):
        if factory is None or not name.startswith("crossenc") or "onnx" in name:
            continue
        monkeypatch.setattr(gpu_check, "crossenc_scorer", capture(name))
        monkeypatch.setattr(gpu_check, "pretokenized_scorer", capture(name))
        factory()
        variant, options = calls[name]
        if name.endswith(", defaults"):
            assert options == {}, name
            continue
        if not variant.startswith("packed"):  # padded torch rows: only in_flight can default differently on CUDA
            assert options.get("in_flight") == (2 if "in_flight 2" in name else 1), name
            checked += 1
            continue
        dtype = {"packed-fp16": torch.float16, "packed-bf16": torch.bfloat16}.get(variant, torch.float32)
        resolved = _parse_options(options, "cuda", dtype)
        assert resolved["use_triton"] == ("triton" in name), name
        assert resolved["cuda_graphs"] == ("graphs" in name), name
        assert resolved["in_flight"] == (2 if "in_flight 2" in name else 1), name
        assert resolved["pin_inputs"] == ("pinned" in name), name
        checked += 1
    assert checked >= 16


def test_kernel_profile_runs_eager_one_batch_at_a_time(tiny_model, pairs, tmp_path, monkeypatch):
    from crossenc.backends.torch_backend.packed import _parse_options

    seen = {}

    def scorer(path, variant, options, *args, **kwargs):
        seen["options"] = _parse_options(options, "cuda", torch.float16)
        raise RuntimeError("stop here")

    monkeypatch.setattr(gpu_check, "pretokenized_scorer", scorer)
    gpu_check.write_kernel_profile(tiny_model, pairs, tmp_path / "profile.txt", device="cuda")
    resolved = seen["options"]
    assert (resolved["cuda_graphs"], resolved["in_flight"], resolved["use_triton"]) == (False, 1, True)
    assert "stop here" in (tmp_path / "profile.txt").read_text()
