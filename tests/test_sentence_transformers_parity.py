"""crossenc and sentence-transformers give the same scores on the same model."""

from __future__ import annotations

import numpy as np
import pytest

from crossenc import CrossEncoder

st = pytest.importorskip("sentence_transformers")


@pytest.mark.parametrize("fixture_name", ["tiny_model", "tiny_model_3labels"])
def test_predict_matches_sentence_transformers(request, fixture_name, pairs):
    model_dir = str(request.getfixturevalue(fixture_name))
    reference = st.CrossEncoder(model_dir, device="cpu")
    ours = CrossEncoder(model_dir, device="cpu")
    expected = reference.predict(pairs, batch_size=16)
    got = ours.predict(pairs, batch_size=16)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.predict(pairs[0]), reference.predict(pairs[0]), atol=1e-5)


def test_rank_matches_sentence_transformers(tiny_model, pairs):
    reference = st.CrossEncoder(str(tiny_model), device="cpu")
    ours = CrossEncoder(str(tiny_model), device="cpu")
    documents = [document for _, document in pairs[:20]]
    expected = reference.rank("audio driver", documents, top_k=5, return_documents=True)
    got = ours.rank("audio driver", documents, top_k=5, return_documents=True)
    np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in expected], atol=1e-5)
    # Same order, except where two scores tie within float rounding (the random model has near-ties).
    for mine, theirs in zip(got, expected):
        if mine["corpus_id"] != theirs["corpus_id"]:
            assert abs(mine["score"] - theirs["score"]) < 1e-5, (got, expected)
    assert [e["text"] for e in got] == [documents[e["corpus_id"]] for e in got]
