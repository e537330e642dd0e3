"""Every reranker family loads, matches sentence-transformers, and gets each backend or a clear refusal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from crossenc import CrossEncoder
from crossenc.hardware import has_cpu_bf16
from crossenc.support import FP32_TOLERANCE, REFERENCE, SAMPLE_PAIRS, support_matrix
from tests.families import FAMILIES, SIZE, build_family_model
from tests.support_table import BEGIN, END, README, render_table

st = pytest.importorskip("sentence_transformers")
ODD_PAIRS = list(SAMPLE_PAIRS)  # an empty query and document, one-letter texts, one past max_length
PACKED_FAMILIES = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "modernbert"}
NEW_PACKED_FAMILIES = ["electra", "distilbert", "modernbert"]  # issue #14 part 4
# what the README shows, measured on the project's reference CPU: a refusal names the family, not the machine
COMMITTED_MATRIX = README.parent / "results" / "cpu-amd-epyc-2c" / "support.json"
FP32_CELLS = [("torch", "sdpa"), ("torch", "eager"), ("torch", "packed"), ("onnx", "plain"), ("openvino", "fp32")]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {family: build_family_model(root / family, family) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_default_variant_matches_sentence_transformers(family_models, family):
    folder = str(family_models[family])
    ours = CrossEncoder(folder, device="cpu")
    expected = st.CrossEncoder(folder, device="cpu").predict(ODD_PAIRS)
    np.testing.assert_allclose(ours.predict(ODD_PAIRS), expected, atol=FP32_TOLERANCE, rtol=0)
    ranked = ours.rank("gnu debugger", [document for _, document in ODD_PAIRS])
    assert sorted(entry["corpus_id"] for entry in ranked) == list(range(len(ODD_PAIRS)))
    attention = ours.info()["details"]["attn_implementation"]
    assert attention == ("eager" if family in ("mpnet", "deberta-v2") else "sdpa")


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - PACKED_FAMILIES))
def test_packed_refused_at_load_naming_the_family(family_models, family):
    """The refusal names the family, says why it has no packed layout and what to use instead."""
    why = {"albert": "shared layer groups", "mpnet": "relative position bias", "deberta-v2": "relative-position terms",
           "qwen3": "decoders attend causally"}[family]
    with pytest.raises(ValueError, match=rf"this checkpoint is '{family}' \(.*{why}.*\)\. Use variant='sdpa'"):
        CrossEncoder(str(family_models[family]), device="cpu", variant="packed")


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_backends_match_or_refuse(family_models, family, tmp_path, monkeypatch):
    """The exact variants of every backend, against the plain Hugging Face forward, and agreeing with
    the committed matrix (results/cpu-amd-epyc-2c/support.json, which the README table shows)."""
    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    cells = support_matrix(str(family_models[family]), "cpu", FP32_CELLS)
    assert [cell for cell in cells if cell.status == "crash"] == []
    for cell in cells:
        if cell.status == "ok":
            assert cell.max_abs_error <= FP32_TOLERANCE, cell
        elif cell.status == "refused":
            assert family in cell.detail, cell  # a refusal names the family
    committed = _committed_matrix()["families"][family]
    statuses = {(c["backend"], c["variant"]): c["status"] for c in committed}
    assert {(c.backend, c.variant): c.status for c in cells} == {key: statuses[key] for key in FP32_CELLS}


def _eager_reference(folder: str, pairs: list[tuple[str, str]]) -> np.ndarray:
    """The plain Hugging Face forward in fp32 (crossenc.support's reference for every cell)."""
    return CrossEncoder(folder, backend=REFERENCE[0], variant=REFERENCE[1], device="cpu").predict_logits(pairs)


@pytest.mark.parametrize("family", NEW_PACKED_FAMILIES)
def test_packed_matches_the_hf_forward(family_models, family):
    """Odd pairs (empty query/document, one-letter texts, one past max_length) and mixed lengths, one batch."""
    folder = str(family_models[family])
    expected = _eager_reference(folder, ODD_PAIRS)
    assert float(expected.std()) > 1e-3, "random model gives constant logits: the comparison would be vacuous"
    encoder = CrossEncoder(folder, device="cpu", variant="packed")
    assert encoder.info()["is_padded"] is False
    together = encoder.predict_logits(ODD_PAIRS, batch_size=len(ODD_PAIRS))
    np.testing.assert_allclose(together, expected, atol=1e-5, rtol=0)
    one_at_a_time = np.concatenate([encoder.predict_logits([pair]) for pair in ODD_PAIRS])
    np.testing.assert_allclose(one_at_a_time, expected, atol=1e-5, rtol=0)


@pytest.mark.skipif(not has_cpu_bf16(), reason="CPU lacks AVX512_BF16/AMX")
@pytest.mark.parametrize("family", NEW_PACKED_FAMILIES)
def test_packed_bf16_close_to_the_hf_forward(family_models, family):
    folder = str(family_models[family])
    encoder = CrossEncoder(folder, device="cpu", variant="packed-bf16")
    assert encoder.info()["precision"] == "bf16"
    assert np.abs(encoder.predict_logits(ODD_PAIRS) - _eager_reference(folder, ODD_PAIRS)).max() < 5e-2


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_packed_modernbert_pooling_with_sequences_longer_than_the_window(family_models, tmp_path, pooling):
    """The tiny ModernBERT has local_attention 16 and its long pair fills 128 tokens: the window matters."""
    folder = tmp_path / "modernbert"
    shutil.copytree(family_models["modernbert"], folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["local_attention"] < 128 and config["global_attn_every_n_layers"] == 2
    (folder / "config.json").write_text(json.dumps({**config, "classifier_pooling": pooling}))
    expected = _eager_reference(str(folder), ODD_PAIRS)
    encoder = CrossEncoder(str(folder), device="cpu", variant="packed")
    assert encoder.info()["details"]["windowed_attention"] == "sdpa-auto-window"
    np.testing.assert_allclose(encoder.predict_logits(ODD_PAIRS), expected, atol=1e-5, rtol=0)


def test_packed_modernbert_windowed_attention_option(family_models):
    folder = str(family_models["modernbert"])
    expected = _eager_reference(folder, ODD_PAIRS)
    options = {"windowed_attention": "sdpa-per-sequence-window"}
    encoder = CrossEncoder(folder, device="cpu", variant="packed", backend_kwargs=options)
    assert encoder.info()["details"]["windowed_attention"] == "sdpa-per-sequence-window"
    np.testing.assert_allclose(encoder.predict_logits(ODD_PAIRS), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown windowed_attention 'nope'"):
        CrossEncoder(folder, device="cpu", variant="packed", backend_kwargs={"windowed_attention": "nope"})


def test_committed_matrix_has_no_crash_and_the_readme_shows_it():
    payload = _committed_matrix()
    assert set(payload["families"]) == set(FAMILIES)
    assert [c for cells in payload["families"].values() for c in cells if c["status"] == "crash"] == []
    readme = README.read_text()
    assert readme.split(BEGIN, 1)[1].split(END, 1)[0].strip() == render_table(payload).strip()


def _committed_matrix() -> dict:
    return json.loads(COMMITTED_MATRIX.read_text())


def test_support_command(family_models, capsys):
    from crossenc.cli import main

    assert main(["support", str(family_models["albert"]), "--variants", "torch:sdpa,torch:packed,torch:fp16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert [line.split()[2] for line in lines[1:4]] == ["ok", "refused", "not"]
    assert lines[-1] == "1 ok, 1 refused, 1 not here, 0 crash"
    assert main(["support", str(family_models["bert"]), "--variants", "torch:packed", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert cells[0]["status"] == "ok" and cells[0]["max_abs_error"] <= FP32_TOLERANCE
    assert main(["support", str(family_models["bert"]), "--variants", "torch:nope"]) == 2


# one family per graph shape runs by default (post-norm LayerNorm; pre-norm LayerNorm + GeGLU; RMSNorm + SwiGLU)
NORM_SHAPES = {"bert", "modernbert", "qwen3"}


@pytest.mark.parametrize("family", [name if name in NORM_SHAPES else pytest.param(name, marks=pytest.mark.slow)
                                    for name in FAMILIES])
def test_openvino_int8_keeps_float_only_part_of_the_graph(family_models, family):
    """The default keep-float scopes find each family's layers (LayerNorm or RMSNorm): the head stays float and
    some MatMuls are left to quantize (Qwen3's RMSNorms once put every MatMul in the 'last layer')."""
    pytest.importorskip("openvino")
    from crossenc.exporters.base import as_source
    from crossenc.exporters.openvino import convert_model
    from crossenc.exporters.openvino_quantize import DEFAULT_KEEP_FLOAT, float_scope_nodes

    source = as_source(str(family_models[family]))
    ov_model, _ = convert_model(source, source.load_config())
    matmuls = [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    kept = set(float_scope_nodes(ov_model, DEFAULT_KEEP_FLOAT))
    assert matmuls[-1] in kept  # the classifier
    assert set(float_scope_nodes(ov_model, ("head",))) and set(float_scope_nodes(ov_model, ("head",))) <= kept
    assert [name for name in matmuls if name not in kept], f"{family}: every MatMul kept in float"


def test_openvino_int8_scopes_of_a_pre_norm_encoder_with_a_head_norm(family_models):
    """ModernBERT's head (dense -> act -> norm) has a norm of its own; it is no layer boundary, so 'head' is the
    head's two projections and 'last_layer' all four of the last layer's (once Wqkv and Wo fell outside both)."""
    pytest.importorskip("openvino")
    from crossenc.exporters.base import as_source
    from crossenc.exporters.openvino import convert_model
    from crossenc.exporters.openvino_quantize import _producer, float_scope_nodes

    source = as_source(str(family_models["modernbert"]))
    ov_model, _ = convert_model(source, source.load_config())
    weighted = [op.get_friendly_name() for op in ov_model.get_ordered_ops()
                if op.get_type_name() == "MatMul" and _producer(op, 1).get_type_name() == "Constant"]
    assert set(float_scope_nodes(ov_model, ("head",))) == set(weighted[-2:])
    assert set(weighted[-6:-2]) <= set(float_scope_nodes(ov_model, ("last_layer",)))
    assert not set(weighted[:-6]) & set(float_scope_nodes(ov_model, ("last_layer",)))


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_first_token_export_of_a_windowed_family_verifies_and_loads(family_models, fmt, tmp_path, monkeypatch):
    """ModernBERT (rotary, a sliding-window last layer, final norm) exported with the first-token last layer:
    the manifest says so, verification passed, and the artifact scores like the plain Hugging Face forward."""
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "openvino")
    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    folder = str(family_models["modernbert"])
    if fmt == "onnx":
        from crossenc.exporters.onnx import OnnxExportConfig, export_onnx

        result, variant = export_onnx(folder, OnnxExportConfig(), tmp_path / "onnx"), "plain"
    else:
        from crossenc.exporters.openvino import OpenVINOExportConfig, export_openvino

        result, variant = export_openvino(folder, OpenVINOExportConfig(verify_bf16=False), tmp_path / "ov"), "fp32"
    assert result.verified and result.report.max_abs_error <= 1e-5, result.report.summary()
    assert result.manifest["export_config"]["last_layer"] == "first token only"
    exported = CrossEncoder(str(result.path), backend=fmt, variant=variant, device="cpu")
    reference = CrossEncoder(folder, backend="torch", variant="eager", device="cpu")
    np.testing.assert_allclose(exported.predict_logits(ODD_PAIRS), reference.predict_logits(ODD_PAIRS),
                               atol=1e-5, rtol=0)


def test_openvino_modernbert_keeps_short_pairs_beside_long_ones_finite(tmp_path, monkeypatch):
    """A padding query farther than the sliding window from every real token has no key: OpenVINO made that
    softmax row NaN, and the next layer's values carried it into real tokens (a short pair batched with a long
    one scored NaN). Exports open such rows (first_token.unmask_unattended); scores match torch eager."""
    pytest.importorskip("openvino")
    from crossenc.exporters.openvino import OpenVINOExportConfig, export_openvino

    monkeypatch.setenv("CROSSENC_CACHE", str(tmp_path / "cache"))
    folder = build_family_model(tmp_path / "modernbert3", "modernbert", size={**SIZE, "layers": 3})  # 1 local layer
    result = export_openvino(str(folder), OpenVINOExportConfig(verify_bf16=False), tmp_path / "ov")
    pairs = [("alpha beta gamma " * 10, "delta epsilon " * 30), ("a", "b"), ("x y", "z")]
    exported = CrossEncoder(str(result.path), backend="openvino", variant="fp32", device="cpu")
    reference = CrossEncoder(str(folder), backend="torch", variant="eager", device="cpu")
    np.testing.assert_allclose(exported.predict_logits(pairs, batch_size=8), reference.predict_logits(pairs),
                               atol=1e-5, rtol=0)


def test_unmask_unattended_opens_only_fully_masked_rows():
    import torch

    from crossenc.backends.torch_backend.first_token import unmask_unattended

    allowed = torch.tensor([[True, False, False], [False, False, False]])[None, None]
    assert unmask_unattended(allowed).tolist() == [[[[True, False, False], [True, True, True]]]]
    low = torch.finfo(torch.float32).min
    additive = torch.tensor([[0.0, low, low], [low, low, low]])[None, None]
    assert unmask_unattended(additive).tolist() == [[[[0.0, low, low], [0.0, 0.0, 0.0]]]]
    assert unmask_unattended(None) is None
