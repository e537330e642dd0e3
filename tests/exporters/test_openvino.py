"""OpenVINO exporter and backend on the tiny random BERT: parity, layouts, integrity, async."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from conftest import random_pairs  # noqa: E402

from crossenc import CrossEncoder  # noqa: E402
from crossenc.batching import encode_pairs, iter_batches  # noqa: E402
from crossenc.errors import ArtifactIntegrityError, UnverifiedArtifactWarning, VerificationFailed  # noqa: E402
from crossenc.exporters.openvino import IR_NAME, OpenVINOExportConfig, export_openvino  # noqa: E402
from crossenc.hardware import has_cpu_bf16  # noqa: E402
from crossenc.quality import Tolerance, spearman  # noqa: E402
from tests.families import build_family_model  # noqa: E402
from tests.support_table import _reason  # noqa: E402

QUERIES, DOCS = 4, 16


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Cache exports of this module go to a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROSSENC_CACHE", str(tmp_path_factory.mktemp("ov-cache")))
        yield


@pytest.fixture(scope="module")
def query_file(tmp_path_factory) -> str:
    """JSONL {query, documents} in the tiny model's vocabulary: verification and calibration set."""
    pairs = random_pairs(QUERIES * DOCS, seed=3)
    path = tmp_path_factory.mktemp("ov-data") / "queries.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, len(pairs), DOCS):
            group = pairs[start : start + DOCS]
            handle.write(json.dumps({"query": group[0][0], "documents": [doc for _, doc in group]}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def fp32_export(tiny_model, query_file, tmp_path_factory):
    config = OpenVINOExportConfig(verification_file=query_file)
    return export_openvino(str(tiny_model), config, tmp_path_factory.mktemp("ov") / "fp32")


@pytest.fixture(scope="module")
def int8_export(tiny_model, query_file, tmp_path_factory):
    # A random 2-layer model has many near-tied logits: judge int8 by a relaxed rank correlation.
    config = OpenVINOExportConfig(
        quantize="int8", calibration_file=query_file, subset_size=64, verification_file=query_file,
        tolerance=Tolerance(spearman=0.9),
    )
    return export_openvino(str(tiny_model), config, tmp_path_factory.mktemp("ov") / "int8")


@pytest.fixture(scope="module")
def reference_logits(tiny_model, pairs) -> np.ndarray:
    return CrossEncoder(str(tiny_model), backend="torch", variant="eager", device="cpu").predict_logits(pairs)


def copy_export(result, target: Path, with_manifest: bool = True) -> Path:
    shutil.copytree(result.path, target)
    if not with_manifest:
        (target / "crossenc_manifest.json").unlink()
    return target


# --------------------------------------------------------------------------- exporter
def test_fp32_export_is_verified_with_fp32_weights(fp32_export, tiny_model):
    assert fp32_export.verified
    assert fp32_export.report.max_abs_error <= 1e-4
    manifest = fp32_export.manifest
    assert manifest["format"] == "openvino" and manifest["variant"] == "fp32" and manifest["verified"]
    assert {IR_NAME, "openvino_model.bin", "config.json"} <= set(manifest["files"])
    assert manifest["export_config"]["converter"].startswith("torch.export")
    assert manifest["export_config"]["last_layer"] == "first token only"
    xml = (fp32_export.path / IR_NAME).read_text()
    assert 'element_type="f16"' not in xml  # ov.save_model compresses to fp16 unless told not to
    parameters = sum(array.size for array in load_file(str(tiny_model / "model.safetensors")).values())
    assert (fp32_export.path / "openvino_model.bin").stat().st_size >= 0.9 * 4 * parameters
    if has_cpu_bf16():
        assert "bf16_inference" in manifest["verification"]


def test_int8_export_is_quantized_and_correlated(int8_export, fp32_export, reference_logits, pairs):
    assert int8_export.verified, int8_export.report.summary()
    details = int8_export.manifest["export_config"]["quantization"]
    # Default keep_float on the 2-layer first-token graph: pooler + classifier (2), layer 0's FFN output
    # MatMul and its attention op (2), and all 8 MatMuls of the last layer (q, k, v, q.k, p.v, out, FFN x2).
    assert details["fake_quantize_nodes"] > 0 and len(details["ignored_nodes"]) == 12
    assert 'type="FakeQuantize"' in (int8_export.path / IR_NAME).read_text()
    int8_bytes = (int8_export.path / "openvino_model.bin").stat().st_size
    assert int8_bytes < (fp32_export.path / "openvino_model.bin").stat().st_size
    logits = CrossEncoder(str(int8_export.path), backend="openvino", variant="int8").predict_logits(pairs)
    assert np.corrcoef(logits[:, 0], reference_logits[:, 0])[0, 1] > 0.9


def test_failed_export_keeps_the_verified_one_and_the_failure_beside_it(
    tiny_model, fp32_export, query_file, reference_logits, pairs, tmp_path
):
    target = copy_export(fp32_export, tmp_path / "model")  # a verified export is already there
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    config = OpenVINOExportConfig(
        compress_to_fp16=True, verification_file=query_file, tolerance=Tolerance(max_abs=1e-9)
    )
    with pytest.raises(VerificationFailed) as failure:
        export_openvino(str(tiny_model), config, target)
    failed = tmp_path / "model.failed"
    assert failure.value.path == failed and not failure.value.report.passed
    assert f"kept for inspection in {failed}" in str(failure.value) and "max abs error" in str(failure.value)
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model", "model.failed"]  # no staging left
    manifest = json.loads((failed / "crossenc_manifest.json").read_text())
    assert manifest["verified"] is False and manifest["variant"] == "fp16-weights"
    assert 'element_type="f16"' in (failed / IR_NAME).read_text()
    # Loading the failed artifact is refused, naming the missed metric and the override; allowed, it runs.
    with pytest.raises(VerificationFailed, match=r"failed verification .*max abs error .*allow_unverified") as refused:
        CrossEncoder(str(failed), backend="openvino", variant="fp32")
    assert refused.value.path == failed
    with pytest.warns(UnverifiedArtifactWarning, match="max abs error"):
        encoder = CrossEncoder(str(failed), backend="openvino", variant="fp32", backend_kwargs={"allow_unverified": True})
    assert encoder.info()["details"]["verified"] is False
    assert np.abs(encoder.predict_logits(pairs) - reference_logits).max() <= 2e-2  # fp16 weights


def test_failed_int8_export_refused_at_load_says_what_to_use_instead(tiny_model, query_file):
    export = {"calibration_file": query_file, "subset_size": 16, "verification_file": query_file,
              "tolerance": {"max_abs": 1e-12}}
    instead = r"openvino variant 'int8' refused for this 'bert' checkpoint \(use variant='bf16' or 'fp32' instead"
    with pytest.raises(VerificationFailed, match=instead + r".*FAILED verification: .*max abs error") as fresh:
        CrossEncoder(str(tiny_model), backend="openvino", variant="int8", backend_kwargs={"export": export})
    failed = fresh.value.path
    assert failed.name == "openvino-int8.failed" and not fresh.value.report.passed
    # The support table keeps a refusal's text before " was not replaced": the alternative is in it.
    assert "variant='bf16' or 'fp32' instead" in _reason(str(fresh.value), "bert")
    with pytest.raises(VerificationFailed, match=instead + r".*kept for inspection in"):  # the kept failure
        CrossEncoder(str(tiny_model), backend="openvino", variant="int8", backend_kwargs={"export": export})
    with pytest.raises(VerificationFailed, match=r"failed verification .*variant='bf16' or 'fp32' instead"):
        CrossEncoder(str(failed), backend="openvino", variant="int8")  # the failed folder itself


def test_export_without_verification_is_refused_unless_allowed(tiny_model, tmp_path):
    folder = export_openvino(str(tiny_model), OpenVINOExportConfig(verify=False), tmp_path / "skipped").path
    with pytest.raises(VerificationFailed, match="without verification .*allow_unverified"):
        CrossEncoder(str(folder), backend="openvino", variant="fp32")
    with pytest.warns(UnverifiedArtifactWarning, match="verification was skipped"):
        CrossEncoder(str(folder), backend="openvino", variant="fp32", backend_kwargs={"allow_unverified": True})


def test_cli_arguments_export_without_verification(tiny_model, tmp_path, capsys):
    import argparse

    from crossenc.exporters.openvino import add_openvino_arguments, run_openvino

    parser = argparse.ArgumentParser()
    add_openvino_arguments(parser)
    args = parser.parse_args([str(tiny_model), str(tmp_path / "out"), "--no-verify", "--min-spearman", "0.5"])
    assert run_openvino(args) == 0
    assert "verification skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "crossenc_manifest.json").read_text())["verified"] is False


# --------------------------------------------------------------------------- a decoder family (Qwen3)
@pytest.fixture(scope="module")
def qwen3_model(tmp_path_factory) -> Path:
    return build_family_model(tmp_path_factory.mktemp("qwen3") / "model", "qwen3")


def test_qwen3_int8_export_is_quantized(qwen3_model, query_file, tmp_path):
    # Qwen3's RMSNorms are no MVN ops: the keep-float scopes once took every MatMul as the last layer's.
    config = OpenVINOExportConfig(quantize="int8", calibration_file=query_file, subset_size=64,
                                  verification_file=query_file, tolerance=Tolerance(spearman=0.9))
    result = export_openvino(str(qwen3_model), config, tmp_path / "int8")
    assert result.verified, result.report.summary()
    details = result.manifest["export_config"]["quantization"]
    kept = [name for name in details["ignored_nodes"] if name.endswith("/MatMul")]
    assert details["fake_quantize_nodes"] > 0 and 0 < len(kept) < 15  # 15 MatMuls: 7 per layer and the score head
    assert "linear_14/aten.linear.default/MatMul" in kept  # the score head stays float
    assert "linear/aten.linear.default/MatMul" not in kept  # layer 0's q projection is quantized
    xml = (result.path / IR_NAME).read_text()
    assert 'type="FakeQuantize"' in xml and 'element_type="i8"' in xml
    encoder = CrossEncoder(str(result.path), backend="openvino", variant="int8")
    reference = CrossEncoder(str(qwen3_model), backend="torch", variant="eager", device="cpu")
    pairs = random_pairs(32, seed=5)
    assert spearman(reference.predict_logits(pairs)[:, 0], encoder.predict_logits(pairs)[:, 0]) > 0.9


def test_int8_export_quantizing_nothing_is_refused_at_export(qwen3_model, query_file, tmp_path):
    config = OpenVINOExportConfig(quantize="int8", calibration_file=query_file, subset_size=8,
                                  ignored_patterns=(".*",), verify=False)
    with pytest.raises(ValueError, match=r"int8 export of this 'qwen3' checkpoint refused: NNCF quantized none .*"
                                         r"variant='bf16' \(or 'fp32'\) instead"):
        export_openvino(str(qwen3_model), config, tmp_path / "int8")
    assert list(tmp_path.iterdir()) == []  # no "int8" folder holding an fp32 graph


# --------------------------------------------------------------------------- backend parity
def test_fp32_variant_matches_torch(fp32_export, reference_logits, pairs):
    encoder = CrossEncoder(str(fp32_export.path), backend="openvino", variant="fp32")
    info = encoder.info()
    assert (info["backend"], info["precision"], info["details"]["inference_precision"]) == ("openvino", "fp32", "f32")
    assert info["thread_safe"] and info["details"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert np.abs(encoder.predict_logits(pairs) - reference_logits).max() <= 1e-4


@pytest.mark.skipif(not has_cpu_bf16(), reason="bf16 inference needs AVX512_BF16 or AMX")
def test_bf16_variant_within_tolerance(fp32_export, reference_logits, pairs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArtifactWarning)  # the random model's ties miss bf16's Spearman
        encoder = CrossEncoder(str(fp32_export.path), backend="openvino", variant="bf16")
    assert encoder.info()["details"]["inference_precision"] == "bf16"
    logits = encoder.predict_logits(pairs)
    assert np.abs(logits - reference_logits).max() <= 1e-1
    assert spearman(reference_logits[:, 0], logits[:, 0]) > 0.95


def test_cache_export_serves_fp32_and_bf16(tiny_model, query_file, reference_logits, pairs):
    options = {"export": {"verification_file": query_file}, "hint": "latency"}
    encoder = CrossEncoder(str(tiny_model), backend="openvino", variant="fp32", backend_kwargs=options)
    ir_file = encoder.info()["details"]["file"]
    assert "openvino-fp32" in ir_file and encoder.info()["details"]["hint"] == "latency"
    assert np.abs(encoder.predict_logits(pairs) - reference_logits).max() <= 1e-4
    if has_cpu_bf16():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnverifiedArtifactWarning)
            bf16 = CrossEncoder(str(tiny_model), backend="openvino", variant="bf16", backend_kwargs=options)
        assert bf16.info()["details"]["file"] == ir_file  # the same fp32 IR, no second export


def test_predict_many_and_split_batches_match_predict_logits(fp32_export, pairs):
    encoder = CrossEncoder(str(fp32_export.path), backend="openvino", variant="fp32")
    predictor = encoder.predictor
    encoded = encode_pairs(encoder.tokenizer, pairs, encoder.max_length, encoder.uses_token_type_ids)
    planned = iter_batches(encoded, predictor.info, batch_size=8, max_tokens=4096, pad_token_id=0)
    batches = [batch for _, batch in planned]
    one_by_one = [predictor.predict_logits(batch) for batch in batches]
    overlapped = list(predictor.predict_many(iter(batches)))
    assert len(overlapped) == len(batches)
    for expected, got in zip(one_by_one, overlapped):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    split = CrossEncoder(str(fp32_export.path), backend="openvino", variant="fp32",
                         backend_kwargs={"split_batches": True, "num_requests": 2})
    for expected, batch in zip(one_by_one, batches):
        np.testing.assert_allclose(split.predictor.predict_logits(batch), expected, atol=1e-5)


# --------------------------------------------------------------------------- layouts
def sentence_transformers_layout(tiny_model: Path, export, target: Path, file_stem: str) -> Path:
    shutil.copytree(tiny_model, target)
    (target / "openvino").mkdir()
    for suffix in (".xml", ".bin"):
        shutil.copy(export.path / f"openvino_model{suffix}", target / "openvino" / f"{file_stem}{suffix}")
    return target


def test_sentence_transformers_layout(tiny_model, fp32_export, int8_export, reference_logits, pairs, tmp_path):
    folder = sentence_transformers_layout(tiny_model, fp32_export, tmp_path / "st", "openvino_model")
    encoder = CrossEncoder(str(folder), backend="openvino", variant="fp32")
    assert encoder.info()["details"]["file"].endswith("openvino/openvino_model.xml")
    assert np.abs(encoder.predict_logits(pairs) - reference_logits).max() <= 1e-4
    for suffix in (".xml", ".bin"):
        target = folder / "openvino" / f"openvino_model_qint8_quantized{suffix}"
        shutil.copy(int8_export.path / f"openvino_model{suffix}", target)
    int8 = CrossEncoder(str(folder), backend="openvino", variant="int8")
    assert int8.info()["details"]["file"].endswith("openvino/openvino_model_qint8_quantized.xml")
    with pytest.raises(ValueError, match="openvino/openvino_model.xml"):
        CrossEncoder(str(folder), backend="openvino", backend_kwargs={"file_name": "nope.xml"})


def test_variant_of_the_wrong_kind_is_refused(int8_export, fp32_export):
    with pytest.raises(ValueError, match="int8"):
        CrossEncoder(str(int8_export.path), backend="openvino", variant="fp32")
    with pytest.raises(ValueError, match="variant='int8'"):
        CrossEncoder(str(int8_export.path), backend="openvino", variant="fp32", backend_kwargs={"file_name": IR_NAME})
    with pytest.raises(ValueError, match="is not quantized") as refused:
        CrossEncoder(str(fp32_export.path), backend="openvino", variant="int8", backend_kwargs={"file_name": IR_NAME})
    assert str(fp32_export.path / IR_NAME) in str(refused.value)
    # The support table strips paths: what is not quantized must still be named in words.
    assert _reason(str(refused.value), "bert").startswith("the OpenVINO IR is not quantized")


def test_unknown_option_is_refused(fp32_export):
    with pytest.raises(ValueError, match="unknown openvino backend option"):
        CrossEncoder(str(fp32_export.path), backend="openvino", backend_kwargs={"thread": 3})


# --------------------------------------------------------------------------- integrity
def test_manifest_hash_mismatch(fp32_export, tmp_path):
    folder = copy_export(fp32_export, tmp_path / "tampered")
    with open(folder / "openvino_model.bin", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactIntegrityError, match="openvino_model.bin"):
        CrossEncoder(str(folder), backend="openvino", variant="fp32")


def test_truncated_bin_without_manifest(fp32_export, tmp_path):
    folder = copy_export(fp32_export, tmp_path / "truncated", with_manifest=False)
    weights = folder / "openvino_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="openvino_model.bin"):
        CrossEncoder(str(folder), backend="openvino", variant="fp32")


def test_garbage_xml_without_manifest(fp32_export, tmp_path):
    folder = copy_export(fp32_export, tmp_path / "garbage", with_manifest=False)
    (folder / IR_NAME).write_text("<net><layers>not closed")
    with pytest.raises(ValueError, match=IR_NAME):
        CrossEncoder(str(folder), backend="openvino", variant="fp32")


def test_missing_openvino_names_the_extra(fp32_export, monkeypatch):
    from crossenc.backends import LoadRequest
    from crossenc.backends.openvino_backend import load

    from crossenc.model_source import ModelSource

    source = ModelSource(path=fp32_export.path, name="tiny")
    request = LoadRequest(source, source.load_config(), "cpu", "fp32", 128)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"crossenc\[openvino\]"):
        load(request)


def test_decoders_on_an_amx_cpu_get_two_threads_a_stream(monkeypatch):
    """OpenVINO 2026.4 compiles a Qwen3 (Llama-style) graph for bf16 on an AMX CPU with SIGFPE, killing the process,
    when a stream has one thread (THROUGHPUT on 2 cores: 2 streams of 1); docs/openvino-amx-decoders.md."""
    from types import SimpleNamespace

    from crossenc.backends import openvino_backend

    monkeypatch.setattr(openvino_backend, "has_cpu_bf16", lambda: True)
    monkeypatch.setattr(openvino_backend, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16", "amx_int8"}))
    monkeypatch.setattr(openvino_backend, "physical_cores", lambda: 8)
    decoder, encoder = SimpleNamespace(num_key_value_heads=2), SimpleNamespace(num_attention_heads=2)

    def config(model_config, variant="bf16", **options):
        return openvino_backend.compile_config(SimpleNamespace(config=model_config, options=options), variant, "CPU")

    assert config(decoder)["NUM_STREAMS"] == "4" and config(decoder, "int8")["NUM_STREAMS"] == "4"
    assert "NUM_STREAMS" not in config(encoder)  # encoders keep OpenVINO's own stream count
    assert "NUM_STREAMS" not in config(decoder, "fp32")  # f32 kernels are not affected
    assert config(decoder, ov_config={"NUM_STREAMS": 8})["NUM_STREAMS"] == "8"  # the user's setting wins
    monkeypatch.setattr(openvino_backend, "physical_cores", lambda: 1)
    assert config(decoder)["INFERENCE_PRECISION_HINT"] == "f32" and "NUM_STREAMS" not in config(decoder)
    monkeypatch.setattr(openvino_backend, "cpu_flags", lambda: frozenset({"avx512_bf16"}))  # Zen 4: no AMX
    assert "NUM_STREAMS" not in config(decoder) and config(decoder)["INFERENCE_PRECISION_HINT"] == "bf16"
