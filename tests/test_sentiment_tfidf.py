"""qc_pipeline.sentiment_tfidf: the sentiment artifact applied without scikit-learn gives scikit-learn's
numbers, bit for bit, and a worker that loads it never imports scikit-learn (its ~180 MB)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from qc_pipeline import sentiment as S
from qc_pipeline.errors import SetupError
from qc_pipeline.sentiment_tfidf import load_artifact


def _texts(shared) -> list[str]:
    """Every dialogue turn and review text of the dev corpora, plus edge cases."""
    texts = []
    for path in sorted(shared.glob("*/dev.jsonl")):
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            texts += [t["text"] for t in row.get("turns", ()) if t.get("text")] or [row.get("text") or ""]
    return texts + ["", "  ", "？？", "a", "哈哈哈哈" * 60, "退款 退款\t退款\n\n退款", "ＡＢＣ１２３投诉"]


@pytest.fixture(scope="module")
def model() -> S.SentimentModel:
    return S.SentimentModel.load()


def test_same_probabilities_as_scikit_learn(model, shared):
    """Every dev text: the TF-IDF rows, P(negative) and the 6 emotion probabilities equal scikit-learn's
    ``transform`` / ``predict_proba`` exactly (also in small batches, where array lengths differ)."""
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("sklearn")
    ref = joblib.load(S.default_artifact_path())
    texts = _texts(shared)
    assert len(texts) > 5000
    _features, polarity, emotion = model._heads
    for batch in (texts, texts[:1], texts[3:10]):
        X = model.features(batch)
        Xs = ref["vectorizer"].transform(batch).tocsr()
        assert all(np.array_equal(idx, Xs.indices[Xs.indptr[i]:Xs.indptr[i + 1]])
                   and np.array_equal(data, Xs.data[Xs.indptr[i]:Xs.indptr[i + 1]]) for i, (idx, data) in enumerate(X))
        assert np.array_equal(polarity.proba(X), ref["polarity"].predict_proba(Xs))
        assert np.array_equal(emotion.proba(X), ref["emotion"].predict_proba(Xs))


def test_loading_does_not_import_scikit_learn():
    code = ("import sys; from qc_pipeline.sentiment import SentimentModel; m = SentimentModel.load(); "
            "m.score(['你们这服务太差了，我要投诉']); "
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'sklearn', 'scipy', 'pandas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_other_scikit_learn_classes_are_refused(tmp_path):
    """The loader reads only the four estimator types the trainer writes; anything else from scikit-learn
    (which would need scikit-learn, or run its code) is a SetupError, not an import."""
    path = tmp_path / "x.joblib"
    # a pickle that references sklearn.svm.SVC by name (protocol 2 GLOBAL opcode), no sklearn needed to write it
    path.write_bytes(b"\x80\x02csklearn.svm\nSVC\nq\x00.")
    with pytest.raises(SetupError, match="sklearn.svm.SVC"):
        load_artifact(path)
    path.write_bytes(pickle.dumps({"format": S.ARTIFACT_FORMAT}))
    assert load_artifact(path) == {"format": S.ARTIFACT_FORMAT}


def test_later_loads_read_the_cache_with_the_same_numbers(model, shared, tmp_path, monkeypatch):
    """The first load writes the fitted state to the per-machine cache; a later load reads it from there
    (no joblib unpickling) and scores every dev text to the same probabilities.  A cache entry naming
    anything outside numpy and the sentiment modules is not executed: it is dropped and rewritten."""
    from qc_pipeline import sentiment_tfidf as T

    monkeypatch.setenv("QC_PIPELINE_CACHE_DIR", str(tmp_path))
    path = S.default_artifact_path()
    digest = S.sha256_file(path)
    cold = S.SentimentModel.load()
    assert T.cache_path(digest).is_file()

    def no_joblib(_path):
        raise AssertionError("read the joblib artifact although the cache holds it")

    monkeypatch.setattr(T, "_load_joblib", no_joblib)
    warm = S.SentimentModel.load()
    texts = _texts(shared)[:3000]
    assert warm.negative_probs(texts) == cold.negative_probs(texts) == model.negative_probs(texts)
    assert [warm.score([t]) for t in texts[:200]] == [cold.score([t]) for t in texts[:200]]

    monkeypatch.undo()
    monkeypatch.setenv("QC_PIPELINE_CACHE_DIR", str(tmp_path))
    T.cache_path(digest).write_bytes(b"\x80\x02cos\nsystem\nq\x00.")  # a pickle naming os.system
    again = S.SentimentModel.load()
    assert again.negative_probs(texts[:50]) == cold.negative_probs(texts[:50])
    assert b"os\nsystem" not in T.cache_path(digest).read_bytes()  # rewritten from the artifact


def test_a_cache_that_cannot_be_written_only_costs_the_fast_load(model, shared, tmp_path, monkeypatch, caplog):
    """A read-only container: the artifact is read and scores as usual; no entry is written, that is logged.
    A damaged entry that cannot be removed (read-only folder) is ignored, not raised."""
    import logging
    from pathlib import Path

    from qc_pipeline import sentiment_tfidf as T

    texts = _texts(shared)[:50]
    (tmp_path / "file").write_text("", "utf-8")  # a folder under a file cannot be written, even as root
    monkeypatch.setenv("QC_PIPELINE_CACHE_DIR", str(tmp_path / "file" / "cache"))
    with caplog.at_level(logging.INFO, logger="qc_pipeline.sentiment_tfidf"):
        assert S.SentimentModel.load().negative_probs(texts) == model.negative_probs(texts)
    assert "sentiment model not cached" in caplog.text

    monkeypatch.setenv("QC_PIPELINE_CACHE_DIR", str(tmp_path))
    damaged = T.cache_path(S.sha256_file(S.default_artifact_path()))
    damaged.write_bytes(b"not a pickle")

    def read_only(self, missing_ok=False):
        raise PermissionError(13, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    assert S.SentimentModel.load().negative_probs(texts) == model.negative_probs(texts)
