"""scripts/bench_families.py: realistic family vocabularies, and the per-precision summary it writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.families import TrainedVocabulary, _tokenizer


@pytest.fixture(scope="module")
def texts():
    from crossenc.workloads import load_workload

    workload = load_workload("debian:0:20")  # public-half queries and their candidates' descriptions
    return [text for query in workload.queries for text in (query.query, *query.documents)]


def _script():
    path = Path(__file__).parents[2] / "scripts" / "bench_families.py"
    spec = importlib.util.spec_from_file_location("bench_families", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "deberta-v2", "qwen3"])
def test_trained_vocabulary_keeps_words_whole(family, texts):
    """A trained vocabulary tokenizes seen words as one token each; the tiny test vocabulary spells them out."""
    trained = _tokenizer(family, TrainedVocabulary(texts, size=3000))
    tiny = _tokenizer(family)
    text = "library for reading and writing images"  # six common words
    trained_ids = trained(text, add_special_tokens=False)["input_ids"]
    assert len(trained_ids) <= 7, trained.convert_ids_to_tokens(trained_ids)
    assert len(tiny(text, add_special_tokens=False)["input_ids"]) > 2 * len(trained_ids)
    assert trained.pad_token_id is not None and trained.pad_token_id < len(trained)


def _row(label, precision, pairs_per_s, spearman=1.0, top10=1.0, max_abs=1e-6, status="ok", engine="crossenc"):
    return {"label": label, "engine": engine, "status": status, "error": None if status == "ok" else "refused: x",
            "precision": precision, "throughput": {"pairs_per_s": pairs_per_s} if status == "ok" else None,
            "ratio_vs_reference": pairs_per_s / 10 if status == "ok" else None,
            "quality": {"spearman": spearman, "top10_agreement": top10, "max_abs_error": max_abs} if status == "ok"
            else None, "info": {"details": {"last_layer": "first token only"}}}


def test_family_summary_picks_the_fastest_row_per_precision():
    script = _script()
    result = {"workload": {"tokens_mean": 120.0}, "rows": [
        _row("torch eager", "fp32", 8.0),
        _row("sentence-transformers torch fp32", "fp32", 10.0, engine="sentence-transformers"),
        _row("openvino fp32", "fp32", 25.0),
        _row("torch packed", "fp32", 0, status="error"),
        _row("torch bf16", "bf16", 30.0, spearman=0.9995, top10=0.995, max_abs=0.01),
        _row("openvino bf16", "bf16", 50.0, spearman=0.995, top10=0.96, max_abs=0.05),
        _row("openvino int8", "int8", 80.0, spearman=0.97, top10=0.9, max_abs=0.1),
    ]}
    entry = script.family_result("bert", result, {"last_layer": "first token only", "speedup": 1.1})
    assert entry["st_fp32_pairs_per_s"] == 10.0
    assert entry["fastest"]["fp32"]["label"] == "openvino fp32" and entry["fastest"]["fp32"]["tier"] == "exact"
    assert entry["fastest"]["bf16"]["label"] == "openvino bf16" and entry["fastest"]["bf16"]["tier"] == "int8"
    assert entry["fastest"]["int8"]["tier"] == "none"
    text = script.markdown({"device": "cpu", "command": "c", "created": "t", "workload": "w", "pairs": 100,
                            "families": [entry]})
    assert "| bert | 120 | 10.0 | openvino fp32 **2.50x** | openvino bf16 **5.00x** (0.995 / 0.960, int8) |" in text
    assert next(line for line in text.splitlines() if line.startswith("| bert | 120")).endswith("| 1.10x |")
    assert "- bert, torch packed: refused: x" in text
    reason = "qwen3: a decoder pools the last real token, not the first"
    assert script._gain({"last_layer": f"all tokens ({reason})"}) == reason


def test_trained_vocabulary_trains_each_kind_once_per_special_tokens(texts):
    vocabulary = TrainedVocabulary(texts, size=500)
    bert, electra = _tokenizer("bert", vocabulary), _tokenizer("electra", vocabulary)
    assert bert.get_vocab() == electra.get_vocab()
    assert len(vocabulary._trained) == 1  # one WordPiece for both: same specials
    _tokenizer("roberta", vocabulary)
    assert len(vocabulary._trained) == 2
