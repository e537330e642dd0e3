"""ONNX exporter and ONNX Runtime backend on the tiny random BERT: every CPU variant, layouts, failures, CLI."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from crossenc import CrossEncoder  # noqa: E402
from crossenc.errors import ArtifactIntegrityError, UnverifiedArtifactWarning, VerificationFailed  # noqa: E402
from crossenc.exporters.onnx import OnnxExportConfig, export_onnx  # noqa: E402
from crossenc.exporters.verify import compare_logits, default_verification_set  # noqa: E402
from crossenc.manifest import MANIFEST_NAME  # noqa: E402
from crossenc.quality import TOLERANCES, Tolerance  # noqa: E402

IDENTITY = torch.nn.Identity()
# The tiny random model's logits on the verification set span -0.21..0.82 (std ~0.20): a logit bound
# near that spread passes a graph that returns the mean for every pair. int8 is held to per-query ranking
# (a constant or shuffled output scores ~0) and, where its error allows, a logit bound well under the
# spread; test_int8_tolerances_reject_broken_scores checks both against the measured spread.
# Measured max|d| / Spearman / top-10: dynamic 0.038 / 0.990 / 0.95, blockwise 0.028 / 0.995 / 0.96,
# static 0.081 / 0.981 / 0.90 (static is held to ranking only).
INT8_TOLERANCE = Tolerance(max_abs=0.06, spearman=0.97, top_k_agreement=0.9)
STATIC_TOLERANCE = Tolerance(spearman=0.95, top_k_agreement=0.85)
CONFIGS = {
    "plain": OnnxExportConfig(),
    "O1": OnnxExportConfig(optimize="O1"),
    "O2": OnnxExportConfig(optimize="O2"),
    "O3": OnnxExportConfig(optimize="O3", tolerance=Tolerance(max_abs=1e-3)),  # GELU approximation
    "dynamic": OnnxExportConfig(optimize="O2", quantize="dynamic", tolerance=INT8_TOLERANCE),
    # 8 calibration queries: with 4, the first-token last layer (unfused, so its QKV MatMuls are quantized
    # too) correlates only ~0.86 with fp32 on this random model
    "static": OnnxExportConfig(optimize="O2", quantize="static", calibration_queries=8, tolerance=STATIC_TOLERANCE),
    "blockwise": OnnxExportConfig(optimize="O2", quantize="blockwise", tolerance=INT8_TOLERANCE),
}
INT8 = ("dynamic", "static", "blockwise")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """Point the crossenc cache (backend exports) at a temporary folder for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROSSENC_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def exports(tiny_model, tmp_path_factory, onnx_cache):
    """Each CPU variant exported (and verified) once."""
    root = tmp_path_factory.mktemp("exports")
    return {name: export_onnx(str(tiny_model), config, root / name) for name, config in CONFIGS.items()}


@pytest.fixture(scope="module")
def torch_logits(tiny_model, pairs):
    return CrossEncoder(str(tiny_model), device="cpu", variant="eager").predict_logits(pairs)


@pytest.fixture(scope="module")
def verification_logits(tiny_model):
    """The default verification set and torch eager's logits on it, scored as verify_encoder scores them."""
    verification_set = default_verification_set()
    reference = CrossEncoder(str(tiny_model), backend="torch", variant="eager", device="cpu")
    return verification_set, reference.predict(verification_set.pairs, activation_fn=IDENTITY, batch_size=32)


def _onnx(folder, **kwargs) -> CrossEncoder:
    return CrossEncoder(str(folder), backend="onnx", device="cpu", **kwargs)


def _tight() -> OnnxExportConfig:
    """A plain export no graph can pass."""
    return OnnxExportConfig(tolerance=Tolerance(max_abs=1e-12))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_export_is_verified_and_described(exports, name):
    result, config = exports[name], CONFIGS[name]
    assert result.verified, result.report.summary()
    manifest = json.loads((result.path / MANIFEST_NAME).read_text())
    assert manifest["verified"] is True and manifest["variant"] == config.variant
    assert manifest["export_config"]["config"] == config.to_dict()
    assert manifest["export_config"]["exporter"] == "torch.onnx.export(dynamo=False)"
    assert manifest["export_config"]["last_layer"] == "first token only"
    assert config.file_name in manifest["files"] and "tokenizer.json" in manifest["files"]
    assert manifest["verification"]["num_pairs"] == 1024
    assert {"onnxruntime", "onnx"} <= set(manifest["tools"])
    if config.optimize in ("O2", "O3"):
        fused = manifest["export_config"]["optimization"]["fused_operators"]
        # 2 layers: the first fuses to Attention; the last (first token only) keeps explicit MatMuls
        assert fused.get("Attention") == 1 and fused.get("SkipLayerNormalization") == 4
    if name in INT8:
        assert manifest["export_config"]["quantization"]["mode"] == name


@pytest.mark.parametrize("name", list(CONFIGS))
def test_backend_matches_torch(exports, name, pairs, torch_logits):
    encoder = _onnx(exports[name].path, variant=CONFIGS[name].variant)
    info = encoder.predictor.info
    assert (info.backend, info.precision, info.thread_safe) == ("onnx", CONFIGS[name].precision, True)
    assert info.details["providers"] == ["CPUExecutionProvider"] and info.details["opset"] == 17
    logits = encoder.predict_logits(pairs)
    if name in INT8:  # measured on these pairs (logit std ~0.1): corr 0.999 / max|d| 0.012; static 0.964 / 0.150
        assert np.corrcoef(logits[:, 0], torch_logits[:, 0])[0, 1] > (0.93 if name == "static" else 0.99)
        bound = CONFIGS[name].effective_tolerance().max_abs
        assert bound is None or np.abs(logits - torch_logits).max() <= bound
    else:
        assert np.abs(logits - torch_logits).max() <= CONFIGS[name].effective_tolerance().max_abs


def test_int8_tolerances_reject_broken_scores(verification_logits):
    """The int8 gates are tight relative to this model's logit spread: outputs a broken graph gives fail them."""
    verification_set, reference = verification_logits
    spread = float(reference.std())
    assert 0.1 < spread < 0.4, f"the tiny model's logit spread changed ({spread:.3f}): re-measure the int8 gates"
    rng = np.random.default_rng(0)
    shuffled = reference.copy()
    for group in verification_set.groups:
        shuffled[group] = rng.permutation(shuffled[group])
    broken = {
        "the mean for every pair": np.full_like(reference, reference.mean()),
        "noise of one spread": reference + rng.normal(0.0, spread, reference.shape),
        "shuffled within each query": shuffled,
        "shifted by one spread": reference + spread,
    }
    for name, tolerance in (("dynamic/blockwise", INT8_TOLERANCE), ("static", STATIC_TOLERANCE)):
        for what, scores in broken.items():
            if what == "shifted by one spread" and tolerance.max_abs is None:
                continue  # a constant shift keeps the order: only a logit bound sees it
            report = compare_logits(reference, scores, verification_set.groups, tolerance, what)
            assert not report.passed, f"the {name} gate passes {what}: {report.summary()}"


def test_fp32_gate_rejects_a_moved_ranking_within_its_logit_bound(verification_logits):
    """A model whose logits spread over ~1e-5 passes max abs 1e-4 with any order: fp32 also asks the ranking."""
    verification_set, reference = verification_logits
    tiny = (reference - reference.mean()) * (1e-5 / float(reference.std()))
    rng = np.random.default_rng(0)
    shuffled = tiny.copy()
    for group in verification_set.groups:
        shuffled[group] = rng.permutation(shuffled[group])
    assert np.abs(shuffled - tiny).max() < TOLERANCES["fp32"].max_abs
    report = compare_logits(tiny, shuffled, verification_set.groups, TOLERANCES["fp32"], "fp32")
    assert not report.passed and any("spearman" in failure for failure in report.failures)
    assert compare_logits(tiny, tiny + 1e-7, verification_set.groups, TOLERANCES["fp32"], "fp32").passed


def test_int8_reports_match_an_independent_computation(exports, verification_logits):
    """The reported numbers are scipy's / numpy's on the same scores, and meet the gate."""
    from scipy.stats import spearmanr

    verification_set, reference = verification_logits
    for name in INT8:
        report, tolerance = exports[name].report, CONFIGS[name].effective_tolerance()
        scores = _onnx(exports[name].path, variant="int8").predict(
            verification_set.pairs, activation_fn=IDENTITY, batch_size=32
        )
        groups = verification_set.groups
        rho = np.mean([spearmanr(reference[group], scores[group]).statistic for group in groups])
        top10 = np.mean([
            len(set(np.argsort(-reference[group])[:10]) & set(np.argsort(-scores[group])[:10])) / 10 for group in groups
        ])
        assert report.spearman == pytest.approx(rho, abs=1e-9), name
        assert report.top_k_agreement == pytest.approx(top10, abs=1e-9), name
        assert report.max_abs_error == pytest.approx(float(np.abs(scores - reference).max()), abs=1e-6), name
        assert report.spearman >= tolerance.spearman and report.top_k_agreement >= tolerance.top_k_agreement, name
        assert report.batch_drift is not None
    # Fixed (static) or per-token-block (blockwise) activation scales do not depend on the batch.
    assert exports["static"].report.batch_drift < 1e-5
    assert exports["blockwise"].report.batch_drift < 1e-5


def test_sentence_transformers_layout(exports, tiny_model, tmp_path, pairs, torch_logits):
    folder = tmp_path / "st"
    shutil.copytree(tiny_model, folder)
    (folder / "onnx").mkdir()
    shutil.copy(exports["plain"].path / "model.onnx", folder / "onnx" / "model.onnx")
    shutil.copy(exports["O2"].path / "model_O2.onnx", folder / "onnx" / "model_O3.onnx")
    for encoder in (_onnx(folder, backend_kwargs={"file_name": "onnx/model.onnx"}), _onnx(folder)):
        assert encoder.predictor.info.details["file"].endswith("onnx/model.onnx")
        assert np.abs(encoder.predict_logits(pairs) - torch_logits).max() < 1e-4
    optimized = _onnx(folder, variant="optimized")
    assert optimized.predictor.info.details["file"].endswith("onnx/model_O3.onnx")


def test_unknown_file_name_lists_what_exists(exports):
    with pytest.raises(ValueError, match=r"model\.onnx"):
        _onnx(exports["plain"].path, backend_kwargs={"file_name": "onnx/missing.onnx"})


def test_truncated_onnx_names_the_file(exports, tiny_model, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model, folder)
    data = (exports["plain"].path / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.onnx"):
        _onnx(folder)


def test_manifest_hash_mismatch_names_the_file(exports, tmp_path):
    folder = tmp_path / "tampered"
    shutil.copytree(exports["O2"].path, folder)
    with open(folder / "model_O2.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactIntegrityError, match="model_O2.onnx"):
        _onnx(folder, variant="optimized")


def test_failed_export_keeps_the_verified_one_and_the_failure_beside_it(exports, tiny_model, tmp_path):
    target = tmp_path / "plain"
    shutil.copytree(exports["plain"].path, target)  # a verified export is already there
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    with pytest.raises(VerificationFailed) as failure:
        export_onnx(str(tiny_model), _tight(), target)
    failed = tmp_path / "plain.failed"
    assert not failure.value.report.passed and failure.value.path == failed
    assert f"kept for inspection in {failed}" in str(failure.value) and "max abs error" in str(failure.value)
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert _onnx(target).predictor.info.details["verified"] is True
    manifest = json.loads((failed / MANIFEST_NAME).read_text())
    assert manifest["verified"] is False and manifest["verification"]["failures"]
    assert "model.onnx" in manifest["files"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plain", "plain.failed"]  # no staging left


def test_unverified_folder_is_refused_unless_allowed(tiny_model, tmp_path):
    with pytest.raises(VerificationFailed) as failure:
        export_onnx(str(tiny_model), _tight(), tmp_path / "tight")
    failed = failure.value.path
    refusal = r"failed verification .*max abs error .*backend='torch'.*allow_unverified"
    with pytest.raises(VerificationFailed, match=refusal) as refused:
        _onnx(failed)
    assert refused.value.path == failed and refused.value.report.failures
    with pytest.warns(UnverifiedArtifactWarning, match="max abs error"):
        encoder = _onnx(failed, backend_kwargs={"allow_unverified": True})
    assert encoder.predictor.info.details["verified"] is False
    skipped = export_onnx(str(tiny_model), OnnxExportConfig(verify=False), tmp_path / "skipped").path
    with pytest.raises(VerificationFailed, match="without verification .*allow_unverified"):
        _onnx(skipped)
    with pytest.warns(UnverifiedArtifactWarning, match="verification was skipped"):
        _onnx(skipped, backend_kwargs={"allow_unverified": True})
    with pytest.raises(ValueError, match="allow_unverified='false'; expected True or False"):
        _onnx(skipped, backend_kwargs={"allow_unverified": "false"})  # a string must not read as True


def test_backend_exports_into_cache_once(tiny_model, onnx_cache):
    first = _onnx(tiny_model)
    file = Path(first.predictor.info.details["file"])
    assert file.name == "model.onnx" and (file.parent / MANIFEST_NAME).is_file()
    stamp = (file.parent / MANIFEST_NAME).stat().st_mtime_ns
    assert _onnx(tiny_model).predictor.info.details["file"] == str(file)
    assert (file.parent / MANIFEST_NAME).stat().st_mtime_ns == stamp  # reused, not re-exported


def test_cached_unverified_export_is_refused_unless_allowed(tiny_model, onnx_cache):
    tight = {"export": {"tolerance": {"max_abs": 1e-12}}}
    lead = r"onnx variant 'optimized' refused for this 'bert' checkpoint \(use backend='torch' instead"
    with pytest.raises(VerificationFailed, match=lead + ".*max abs error") as first:
        _onnx(tiny_model, variant="optimized", backend_kwargs=tight)
    failed = first.value.path
    folder = failed.with_name("onnx-optimized")
    assert failed.name == "onnx-optimized.failed" and not folder.exists()
    stamp = (failed / MANIFEST_NAME).stat().st_mtime_ns
    with pytest.raises(VerificationFailed, match=lead + r".*kept for inspection .*max abs error .*allow_unverified"):
        _onnx(tiny_model, variant="optimized", backend_kwargs=tight)
    assert (failed / MANIFEST_NAME).stat().st_mtime_ns == stamp  # the kept failure is refused, not re-exported
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = _onnx(tiny_model, variant="optimized", backend_kwargs={**tight, "allow_unverified": True})
    assert encoder.predictor.info.details["verified"] is False
    assert Path(encoder.predictor.info.details["file"]).parent == folder and not failed.exists()
    assert any(issubclass(w.category, UnverifiedArtifactWarning) for w in caught)
    with pytest.raises(VerificationFailed, match=r"the cached .*max abs error .*allow_unverified"):
        _onnx(tiny_model, variant="optimized", backend_kwargs=tight)


def test_bad_requests_raise_value_error(tiny_model, onnx_cache):
    with pytest.raises(ValueError, match="CUDA"):
        _onnx(tiny_model, variant="fp16")
    with pytest.raises(ValueError, match="unknown onnx backend option"):
        _onnx(tiny_model, backend_kwargs={"bogus": 1})
    with pytest.raises(ValueError, match="providers"):
        _onnx(tiny_model, backend_kwargs={"providers": ["NoSuchExecutionProvider"]})
    with pytest.raises(ValueError, match="opset"):
        OnnxExportConfig(opset=13)


def test_sends_only_the_inputs_the_graph_declares():
    from crossenc.backends.onnx_backend import OnnxPredictor
    from crossenc.predictor import PredictorInfo, TokenBatch

    class Arg:
        def __init__(self, name: str) -> None:
            self.name, self.type = name, "tensor(int64)"

    class FakeSession:
        def get_inputs(self):
            return [Arg("input_ids"), Arg("attention_mask")]

        def get_outputs(self):
            return [Arg("logits")]

        def get_providers(self):
            return ["CPUExecutionProvider"]

        def run(self, names, feed):
            self.feed = feed
            return [np.zeros((len(feed["input_ids"]), 1), dtype=np.float32)]

    session = FakeSession()
    info = PredictorInfo("onnx", "plain", "cpu", "fp32", 16, 1)
    ids = np.ones((2, 3), dtype=np.int64)
    OnnxPredictor(session, info, "cpu").predict_logits(TokenBatch(ids, ids, np.zeros_like(ids), np.array([3, 3])))
    assert set(session.feed) == {"input_ids", "attention_mask"}


def test_o4_is_fp16_with_fp32_inputs_and_outputs(tiny_model, tmp_path):
    import onnx

    result = export_onnx(str(tiny_model), OnnxExportConfig(optimize="O4", device="cuda", verify=False), tmp_path / "o4")
    graph = onnx.load(str(result.path / "model_O4.onnx")).graph
    assert {init.data_type for init in graph.initializer if init.dims} == {onnx.TensorProto.FLOAT16}
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert result.manifest["verified"] is False and result.manifest["variant"] == "fp16"
    with pytest.raises(ValueError, match="cuda"):
        OnnxExportConfig(optimize="O4")


def test_cli_export_and_failed_verification(tiny_model, tmp_path, monkeypatch, capsys):
    from crossenc.cli import main

    assert main(["export", "onnx", str(tiny_model), str(tmp_path / "cli"), "--optimize", "O2"]) == 0
    assert (tmp_path / "cli" / "model_O2.onnx").is_file()
    monkeypatch.setitem(TOLERANCES, "fp32", Tolerance(max_abs=1e-12))
    assert main(["export", "onnx", str(tiny_model), str(tmp_path / "cli-bad")]) != 0
    error = capsys.readouterr().err
    assert "VERIFICATION FAILED" in error and str(tmp_path / "cli-bad.failed") in error
    assert not (tmp_path / "cli-bad").exists() and (tmp_path / "cli-bad.failed" / MANIFEST_NAME).is_file()


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_excluded_head_stays_float(tiny_model, tmp_path, mode):
    """quantize_dynamic renames Gemm nodes before matching exclusions: the head must still stay fp32."""
    import onnx

    config = OnnxExportConfig(optimize="O2", quantize=mode, exclude=("pooler", "classifier"), calibration_queries=2,
                              verify=False)
    result = export_onnx(str(tiny_model), config, tmp_path / mode)
    graph = onnx.load(str(result.path / "model_qint8.onnx")).graph
    head = [node for node in graph.node if "/pooler/dense/" in node.name or "/classifier/" in node.name]
    assert head, "the head's nodes were not found by name"
    quantized = [node.name for node in head if "quant" in node.name.lower() or "Integer" in node.op_type]
    assert quantized == [], f"{mode}: excluded head nodes were quantized: {quantized}"
    body = [node for node in graph.node if node.op_type in ("MatMulInteger", "QAttention", "DequantizeLinear")]
    assert body, f"{mode}: nothing was quantized"


def test_a_cached_export_of_an_older_graph_is_rebuilt(tiny_model, tmp_path, monkeypatch):
    """The export config records first_token.GRAPH_REVISION: an export cached by older graph code (e.g. before
    a fix to the traced module) no longer matches and is exported again, not reused."""
    from crossenc.backends.torch_backend.first_token import GRAPH_REVISION
    from crossenc.manifest import MANIFEST_NAME

    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    CrossEncoder(str(tiny_model), backend="onnx", variant="plain", device="cpu")
    manifest_path = next((tmp_path / "cache" / "exports").rglob(MANIFEST_NAME))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["export_config"]["config"]["graph_revision"] == GRAPH_REVISION
    manifest["export_config"]["config"]["graph_revision"] = GRAPH_REVISION - 1
    manifest_path.write_text(json.dumps(manifest))
    CrossEncoder(str(tiny_model), backend="onnx", variant="plain", device="cpu")
    assert json.loads(manifest_path.read_text())["export_config"]["config"]["graph_revision"] == GRAPH_REVISION
