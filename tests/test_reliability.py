"""Bad input, batch invariance, concurrency, interrupts, bounded memory, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossenc import CrossEncoder
from crossenc.backends import BACKENDS
from crossenc.batching import plan_batches

from conftest import WORDS, random_pairs

IDENTITY = torch.nn.Identity()

# (description, sentences, expected exception or None for "scored")
PREDICT_CASES = [
    ("None", None, TypeError),
    ("bare string", "what is linux", TypeError),
    ("bytes", b"query", TypeError),
    ("pair of length 1", [("only query",)], ValueError),
    ("pair of length 3", [("q", "d", "extra")], ValueError),
    ("single pair of length 3", ("q", "d", "extra"), ValueError),
    ("number member", [("q", 3.5)], TypeError),
    ("bytes member", [("q", b"doc")], TypeError),
    ("None member", [(None, "doc")], TypeError),
    ("integer instead of pairs", 42, TypeError),
    ("dict instead of pairs", {"q": "d"}, TypeError),
    ("empty strings", [("", "")], None),
    ("whitespace only", [("   ", "\t\n ")], None),
    ("control characters", [("\x00\x01q", "doc\x07\x1b[31m")], None),
    ("lone surrogate", [("q\ud800", "doc \udfff end")], None),
    ("right-to-left and combining", [("\u05e9\u05dc\u05d5\u05dd", "e\u0301\u0301\u0301 \u202eevil\u202c")], None),
    ("emoji", [("\U0001f600 linux", "\U0001f9d1\u200d\U0001f4bb code")], None),
    ("numpy string array", np.array([["q", "d"], ["q2", "d2"]]), None),
    ("tuple of tuples", (("q", "d"), ("q2", "d2")), None),
]


@pytest.mark.parametrize("description,sentences,error", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict_inputs(tiny_encoder, description, sentences, error):
    if error is not None:
        with pytest.raises(error) as raised:
            tiny_encoder.predict(sentences)
        assert str(raised.value), "the error must say what is wrong"
        return
    scores = np.atleast_1d(tiny_encoder.predict(sentences))
    assert scores.dtype == np.float32 and np.isfinite(scores).all()


RANK_CASES = [
    ("None query", None, ["d"], None, TypeError),
    ("documents is a string", "q", "doc", None, TypeError),
    ("None document", "q", ["d", None], None, TypeError),
    ("negative top_k", "q", ["d"], -1, ValueError),
    ("float top_k", "q", ["d"], 1.5, TypeError),
    ("documents is None", "q", None, None, TypeError),
]


@pytest.mark.parametrize("description,query,documents,top_k,error", RANK_CASES, ids=[c[0] for c in RANK_CASES])
def test_rank_inputs(tiny_encoder, description, query, documents, top_k, error):
    with pytest.raises(error):
        tiny_encoder.rank(query, documents, top_k=top_k)


@pytest.mark.parametrize("batch_size,error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_batch_size(tiny_encoder, pairs, batch_size, error):
    with pytest.raises(error, match="batch_size"):
        tiny_encoder.predict(pairs[:2], batch_size=batch_size)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"backend": "tensorflow"}, ValueError, "unknown backend"),
        ({"backend": 3}, TypeError, "backend"),
        ({"device": "tpu"}, ValueError, "unknown device"),
        ({"device": "cuda:x"}, ValueError, "device"),
        ({"max_length": 100_000}, ValueError, "position embeddings"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"variant": "nope"}, ValueError, "unknown variant"),
        ({"max_tokens": -1}, ValueError, "max_tokens"),
    ],
)
def test_bad_construction(tiny_model, kwargs, error, match):
    with pytest.raises(error, match=match):
        CrossEncoder(str(tiny_model), **kwargs)


def test_missing_model_folder(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        CrossEncoder(str(tmp_path))
    with pytest.raises(ValueError, match="neither a model folder"):
        CrossEncoder(str(tmp_path / "does" / "not" / "exist"))


def test_ten_megabyte_document_is_truncated_and_scored(tiny_encoder):
    huge = ("linux kernel driver " * 600_000)[:10_000_000]
    score = tiny_encoder.predict(("kernel", huge), activation_fn=IDENTITY)
    reference = tiny_encoder.predict(("kernel", huge[:5000]), activation_fn=IDENTITY)
    assert score == pytest.approx(reference, abs=1e-5), "only the first max_length tokens may count"


@pytest.mark.slow
def test_hundred_thousand_pairs_stay_within_token_budget(tiny_model):
    encoder = CrossEncoder(str(tiny_model), max_tokens=2048)
    seen = []
    original = encoder.predictor.predict_logits

    def spy(batch):
        seen.append(batch.padded_tokens)
        return original(batch)

    encoder.predictor.predict_logits = spy
    pairs = [("linux kernel", "driver for audio video " * (i % 7)) for i in range(100_000)]
    scores = encoder.predict(pairs, batch_size=512)
    assert scores.shape == (100_000,) and np.isfinite(scores).all()
    assert max(seen) <= 2048
    np.testing.assert_allclose(scores[:7], encoder.predict(pairs[:7]), atol=1e-5)


def test_keyboard_interrupt_leaves_instance_usable(tiny_model, pairs):
    encoder = CrossEncoder(str(tiny_model))
    expected = encoder.predict(pairs, batch_size=4)
    original = encoder.predictor.predict_logits
    calls = {"count": 0}

    def interrupt_on_third(batch):
        calls["count"] += 1
        if calls["count"] == 3:
            raise KeyboardInterrupt
        return original(batch)

    encoder.predictor.predict_logits = interrupt_on_third
    with pytest.raises(KeyboardInterrupt):
        encoder.predict(pairs, batch_size=4)
    encoder.predictor.predict_logits = original
    np.testing.assert_allclose(encoder.predict(pairs, batch_size=4), expected, atol=0)


# ---------------------------------------------------------------- every backend present
def _backends() -> list[tuple[str, str]]:
    """The first CPU variant of each code path of each installed backend, as crossenc.backends declares them."""
    present: dict[tuple[str, str], str] = {}
    for backend in BACKENDS.values():
        for variant in backend.runnable("cpu"):
            present.setdefault((backend.name, variant.family), variant.name)
    return [(backend, variant) for (backend, _), variant in present.items()]


@pytest.fixture(scope="module", params=_backends(), ids=lambda p: f"{p[0]}-{p[1]}")
def any_encoder(request, tiny_model, tmp_path_factory):
    backend, variant = request.param
    with pytest.MonkeyPatch.context() as patch:  # cache exports go to a temporary folder, for this module only
        patch.setenv("CROSSENC_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield CrossEncoder(str(tiny_model), backend=backend, variant=variant)


def test_backend_matches_torch_reference(any_encoder, tiny_encoder, pairs):
    np.testing.assert_allclose(
        any_encoder.predict(pairs, activation_fn=IDENTITY), tiny_encoder.predict(pairs, activation_fn=IDENTITY),
        atol=1e-4, rtol=0,
    )


def test_concurrent_calls_match_serial(any_encoder):
    chunks = [random_pairs(12, seed=seed) for seed in range(16)]
    serial = [any_encoder.predict(chunk, batch_size=5) for chunk in chunks]
    start = threading.Barrier(8)

    def work(index):
        if index < 8:
            start.wait()
        return any_encoder.predict(chunks[index], batch_size=5)

    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(work, range(len(chunks))))
    for got, expected in zip(parallel, serial):
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


text = st.lists(st.sampled_from(WORDS + ["\U0001f600", "x1", ""]), min_size=0, max_size=40).map(" ".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs_list=st.lists(st.tuples(text, text), min_size=1, max_size=24),
    batch_size=st.integers(min_value=1, max_value=9),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_batch_invariance_and_input_order(any_encoder, pairs_list, batch_size, seed):
    """A pair's score does not depend on its neighbours, its batch or the call's order."""
    scores = any_encoder.predict(pairs_list, batch_size=batch_size, activation_fn=IDENTITY)
    alone = np.array([any_encoder.predict(pair, activation_fn=IDENTITY) for pair in pairs_list[:4]])
    np.testing.assert_allclose(scores[: len(alone)], alone, atol=1e-5, rtol=0)
    permutation = np.random.default_rng(seed).permutation(len(pairs_list))
    shuffled = any_encoder.predict([pairs_list[i] for i in permutation], batch_size=batch_size, activation_fn=IDENTITY)
    np.testing.assert_allclose(shuffled, scores[permutation], atol=1e-5, rtol=0)


@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=60), batch_size=st.integers(1, 16),
       max_tokens=st.integers(1, 2000), padded=st.booleans())
def test_plan_batches_covers_every_pair_once_within_budget(lengths, batch_size, max_tokens, padded):
    lengths = np.array(lengths)
    batches = plan_batches(lengths, batch_size=batch_size, max_tokens=max_tokens, is_padded=padded)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= batch_size
        cost = len(batch) * lengths[batch].max() if padded else lengths[batch].sum()
        assert cost <= max_tokens or len(batch) == 1


# ---------------------------------------------------------------- atomic writes
def test_killed_export_leaves_no_valid_folder(tmp_path):
    """A process killed inside atomic_output_dir leaves only a dot-prefixed temp folder."""
    script = (
        "import os, signal\n"
        "from crossenc.paths import atomic_output_dir\n"
        f"with atomic_output_dir({str(tmp_path / 'artifact')!r}) as staging:\n"
        "    (staging / 'config.json').write_text('{}')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert completed.returncode != 0
    assert not (tmp_path / "artifact").exists()
    with pytest.raises(ValueError):
        CrossEncoder(str(tmp_path / "artifact"))


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    from crossenc.paths import atomic_output_dir

    target = tmp_path / "artifact"
    with atomic_output_dir(target) as staging:
        (staging / "a.txt").write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as staging:
            (staging / "a.txt").write_text("two")
            raise RuntimeError("export failed midway")
    assert (target / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    from crossenc import paths

    target = tmp_path / "out" / "result.json"
    paths.atomic_write(target, b"one")
    paths.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(paths.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        paths.atomic_write(target, b"three")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]  # the temporary file is gone


def test_atomic_dir_without_overwrite_keeps_a_target_that_appeared_meanwhile(tmp_path):
    from crossenc.paths import atomic_output_dir

    target = tmp_path / "artifact"
    with pytest.raises(FileExistsError, match="appeared"):
        with atomic_output_dir(target, overwrite=False) as staging:
            (staging / "a.txt").write_text("ours")
            target.mkdir()
            (target / "a.txt").write_text("theirs")  # another process finished first
    assert (target / "a.txt").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]


def _build(tag: str, passed: bool):
    """A build step for write_export: one file, a manifest, and a report that passes or misses max_abs."""
    from crossenc.exporters.verify import compare_logits
    from crossenc.manifest import MANIFEST_NAME
    from crossenc.quality import Tolerance

    def build(staging):
        (staging / "weights.bin").write_text(tag)
        reference = np.linspace(0.0, 1.0, 8)
        report = compare_logits(reference, reference + (0.0 if passed else 0.5), [slice(0, 8)],
                                Tolerance(max_abs=0.1), "test")
        manifest = {"tag": tag, "verified": report.passed}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest))
        return manifest, report

    return build


def test_failed_export_never_replaces_the_target(tmp_path):
    """write_export, the path every exporter takes: only a verified artifact lands at the target."""
    from crossenc.errors import VerificationFailed
    from crossenc.exporters.base import write_export

    target, failed = tmp_path / "artifact", tmp_path / "artifact.failed"
    with pytest.raises(VerificationFailed) as first:
        write_export(target, _build("bad-1", passed=False), "test export", "advice")
    assert not target.exists(), "a failed first export must not create the target"
    assert first.value.path == failed and str(failed) in str(first.value) and "nothing was written" in str(first.value)
    assert write_export(target, _build("good", passed=True), "test export", "advice").path == target
    assert (target / "weights.bin").read_text() == "good" and not failed.exists(), "a passing export clears .failed"
    for attempt in ("bad-2", "bad-3"):  # each failure replaces the older one and leaves the good export alone
        with pytest.raises(VerificationFailed, match="previous export there is unchanged"):
            write_export(target, _build(attempt, passed=False), "test export", "advice")
        assert (target / "weights.bin").read_text() == "good"
        assert (failed / "weights.bin").read_text() == attempt

    def breaks_midway(staging):
        _build("half", passed=True)(staging)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # a build that breaks midway touches neither folder
        write_export(target, breaks_midway, "test export", "advice")
    assert (target / "weights.bin").read_text() == "good" and (failed / "weights.bin").read_text() == "bad-3"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["artifact", "artifact.failed"]


def test_unverified_manifest_is_refused_unless_allowed(tmp_path, tiny_model):
    import shutil

    from crossenc.errors import UnverifiedArtifactWarning, VerificationFailed
    from crossenc.manifest import check_manifest, write_manifest

    folder = tmp_path / "export"
    shutil.copytree(tiny_model, folder)
    failed = {"passed": False, "failures": ["spearman 0.5000 < 0.99"]}
    for verification, says in ((failed, "spearman 0.5000 < 0.99"), (None, "verification was skipped")):
        write_manifest(folder, artifact_format="hf", variant="fp32", source_name="tiny", source_revision=None,
                       source_dir=tiny_model, export_config={}, tools={}, verification=verification)
        with pytest.raises(VerificationFailed, match=rf"{says}.*allow_unverified': True") as refused:
            check_manifest(folder)
        assert refused.value.path == folder
        with pytest.warns(UnverifiedArtifactWarning, match=says):
            assert check_manifest(folder, allow_unverified=True)["verified"] is False


def test_manifest_detects_modified_file(tmp_path, tiny_model):
    import shutil

    from crossenc.errors import ArtifactIntegrityError
    from crossenc.manifest import check_manifest, write_manifest

    folder = tmp_path / "export"
    shutil.copytree(tiny_model, folder)
    write_manifest(folder, artifact_format="hf", variant="fp32", source_name="tiny", source_revision=None,
                   source_dir=tiny_model, export_config={}, tools={}, verification={"passed": True})
    assert check_manifest(folder)["verified"] is True
    with open(folder / "model.safetensors", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactIntegrityError, match="model.safetensors"):
        check_manifest(folder)


def test_trust_remote_code_off_by_default(tmp_path, tiny_model, tiny_encoder, pairs):
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel",
                          "AutoConfig": "modeling_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    encoder = CrossEncoder(str(folder))  # must not import modeling_evil (it would raise SystemExit)
    assert not [name for name in sys.modules if "modeling_evil" in name]
    # auto_map ignored: the built-in BERT class runs the same weights, so the scores are the plain model's
    np.testing.assert_array_equal(encoder.predict(pairs), tiny_encoder.predict(pairs))


def test_move_folder_is_claimed_whole(tmp_path):
    """Of two movers of one folder, one gets all of it; the other finds nothing (no partial target)."""
    from crossenc.exporters.base import move_folder

    source = tmp_path / "export.failed"
    source.mkdir()
    for name in ("a.bin", "crossenc_manifest.json"):
        (source / name).write_text(name)
    move_folder(source, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["a.bin", "crossenc_manifest.json"]
    assert not source.exists()
    with pytest.raises(FileNotFoundError):
        move_folder(source, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["a.bin", "crossenc_manifest.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no claim folders left
