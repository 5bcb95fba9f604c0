"""The scikit-learn sentiment artifact, scored without scikit-learn.

``scripts/train_sentiment.py`` fits a ``FeatureUnion`` of ``TfidfVectorizer`` parts and two
``LogisticRegression`` heads with scikit-learn and stores them with joblib.  Importing scikit-learn
only to apply them costs a worker ~180 MB of memory (it pulls in SciPy, pandas and pyarrow) and ~2 s
of start-up, so this module reads the fitted state from the pickle without importing scikit-learn
(:func:`load_artifact`: the four estimator classes become plain attribute holders, any other class
from scikit-learn is refused) and applies it with numpy, operation by operation as scikit-learn 1.9
does (float32 TF-IDF, float64 dot products summed in the same order, SciPy's ``expit``, the same
softmax), so the probabilities are the same numbers (``tests/test_sentiment_tfidf.py`` compares them
with scikit-learn's own on the dev corpora).  The same code scores a freshly fitted model in the
training script, so calibration and production share one implementation.

joblib reads its pickles with Python's pure-Python unpickler: ~1.2 s of every worker's start-up for a
2.5 MB artifact.  The first load on a machine therefore also writes the fitted state as a plain pickle into
the per-machine cache (:mod:`qc_pipeline.cache`, named by the artifact's SHA-256), which later loads read
with the C unpickler in ~0.1 s; that unpickler accepts only numpy arrays, this module's estimator holders
and the sentiment module's two text functions.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

# Fitted estimators in the artifact, read as plain attribute holders.
_ESTIMATORS = {
    ("sklearn.pipeline", "FeatureUnion"),
    ("sklearn.feature_extraction.text", "TfidfVectorizer"),
    ("sklearn.feature_extraction.text", "TfidfTransformer"),
    ("sklearn.linear_model._logistic", "LogisticRegression"),
}


class Fitted:
    """The pickled ``__dict__`` of a fitted scikit-learn estimator (no methods)."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


@functools.lru_cache(maxsize=None)
def _fitted_class(name: str) -> type:
    return type(name, (Fitted,), {})


def _fitted(name: str, state: dict) -> Fitted:
    """Rebuild a :class:`Fitted` holder from the cache pickle."""
    obj = _fitted_class(name)()
    obj.__setstate__(state)
    return obj


def _load_joblib(path: Path) -> Any:
    from joblib.numpy_pickle import NumpyUnpickler
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    class _Unpickler(NumpyUnpickler):
        def find_class(self, module: str, name: str):
            if (module, name) in _ESTIMATORS:
                return _fitted_class(name)
            if module.split(".")[0] == "sklearn":
                raise SetupError(f"{path}: unexpected scikit-learn class {module}.{name} in the sentiment artifact")
            return super().find_class(module, name)

    with open(path, "rb") as f, _validate_fileobject_and_memmap(f, str(path)) as (fobj, _mmap):
        return _Unpickler(str(path), fobj, ensure_native_byte_order=True).load()


class _CachePickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, Fitted):
            return _fitted, (type(obj).__name__, obj.__dict__)
        return NotImplemented


# What the cache pickle may name: numpy's array/dtype/scalar constructors, the holders, the text functions.
_CACHE_NAMES = {("qc_pipeline.sentiment_tfidf", "_fitted"), ("qc_pipeline.sentiment", "normalize_text"),
                ("qc_pipeline.sentiment", "word_analyzer")}
_NUMPY_MODULES = {"numpy", "numpy._core.multiarray", "numpy._core.numeric", "numpy.core.multiarray",
                  "numpy.core.numeric"}
_NUMPY_NAMES = {"dtype", "ndarray", "scalar", "_reconstruct", "_frombuffer", "float32", "float64", "int32", "int64"}


class _CacheUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _CACHE_NAMES or (module in _NUMPY_MODULES and name in _NUMPY_NAMES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in the sentiment cache")


def cache_path(digest: str) -> Path:
    from qc_pipeline.cache import cache_root

    return cache_root() / f"sentiment-{digest[:16]}.pkl"


def load_artifact(path: Path, digest: str | None = None) -> Any:
    """Unpickle a joblib artifact whose scikit-learn objects are the estimators above (through the
    per-machine cache when it holds this artifact, ``digest`` being its SHA-256)."""
    if digest is None:
        from qc_pipeline.models import sha256_file

        digest = sha256_file(path)
    cached = cache_path(digest)
    try:
        data = cached.read_bytes()
    except OSError:
        data = None
    if data is not None:
        try:
            return _CacheUnpickler(io.BytesIO(data)).load()
        except Exception as e:  # a damaged or foreign cache entry: read the artifact itself, rewrite the entry
            log.warning("ignoring the sentiment cache %s (%s: %s)", cached, e.__class__.__name__, e)
            with contextlib.suppress(OSError):  # a read-only cache keeps it; the artifact is read below
                cached.unlink(missing_ok=True)
    obj = _load_joblib(path)
    from qc_pipeline.cache import build_once

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            _CachePickler(f, protocol=5).dump(obj)

    try:
        build_once(cached, write, "the sentiment model's fast-loading copy")
    except (SetupError, OSError, pickle.PicklingError) as e:  # the cache is an optimisation, never a failure
        log.info("sentiment model not cached (%s); every start reads the joblib artifact", e)
    return obj


Row = tuple[np.ndarray, np.ndarray]   # one text's TF-IDF vector: sorted feature indices (int64), values (float32)

_WHITE_SPACES = re.compile(r"\s\s+")


# the TfidfVectorizer settings this module applies (anything else is refused)
SUPPORTED_TFIDF = {"input": "content", "binary": False, "norm": "l2", "use_idf": True, "sublinear_tf": True,
                   "stop_words": None, "tokenizer": None}


def unsupported_tfidf(vec: Any) -> str | None:
    """The first setting of a fitted ``TfidfVectorizer`` that :class:`TfidfPart` cannot apply, as ``key=value``."""
    for key, want in SUPPORTED_TFIDF.items():
        if getattr(vec, key, want) != want:
            return f"{key}={getattr(vec, key)!r}"
    return None


def char_ngrams(preprocess: Callable[[str], str], ngram_range: tuple[int, int]) -> Callable[[str], list[str]]:
    """scikit-learn's ``analyzer="char"``: preprocess, fold whitespace runs, every n-gram of each length."""
    lo, hi = ngram_range

    def analyze(text: str) -> list[str]:   # TfidfVectorizer._char_ngrams
        text = _WHITE_SPACES.sub(" ", preprocess(text))
        return [text[i:i + n] for n in range(lo, min(hi, len(text)) + 1) for i in range(len(text) - n + 1)]
    return analyze


class TfidfPart:
    """One ``TfidfVectorizer``: counts over its vocabulary, sublinear tf, idf, l2 norm."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, dtype: Any,
                 analyze: Callable[[str], list[str]]) -> None:
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf)
        self.dtype = np.dtype(dtype)
        self.analyze = analyze

    @classmethod
    def from_vectorizer(cls, vec: Any) -> "TfidfPart":
        bad = unsupported_tfidf(vec)
        if bad:
            raise SetupError(f"sentiment vectorizer: {bad} is not supported "
                             f"(the artifact must come from scripts/train_sentiment.py)")
        if callable(vec.analyzer):
            analyze = vec.analyzer
        elif vec.analyzer == "char" and vec.preprocessor is not None:
            analyze = char_ngrams(vec.preprocessor, vec.ngram_range)
        else:
            raise SetupError(f"sentiment vectorizer: analyzer {vec.analyzer!r} without a preprocessor is not supported")
        return cls(vec.vocabulary_, vec._tfidf.idf_, vec.dtype, analyze)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def rows(self, texts: Sequence[str]) -> list[Row]:
        """The vectors of ``texts``, computed like ``TfidfVectorizer.transform`` on one CSR matrix: counts in
        the vectorizer's dtype (float32), log + 1, times idf, each row divided by its l2 norm."""
        indices, counts = [], []
        for text in texts:
            found: dict[int, int] = {}
            for feature in self.analyze(text):
                j = self.vocabulary.get(feature)
                if j is not None:
                    found[j] = found.get(j, 0) + 1
            order = sorted(found)
            indices.append(np.array(order, dtype=np.int64))
            counts.extend(found[j] for j in order)
        data = np.array(counts, dtype=self.dtype)
        np.log(data, data)                        # sublinear tf, on all rows' values at once (as SciPy holds them)
        data += 1.0
        data *= self.idf[np.concatenate(indices)] if indices else self.idf[:0]
        out, start = [], 0
        for idx in indices:
            row = data[start:start + len(idx)]
            start += len(idx)
            sum_sq = 0.0                          # l2 norm: float products summed in double, in index order
            for sq in (row * row).tolist():
                sum_sq += sq
            if sum_sq != 0.0:
                row = (row.astype(np.float64) / math.sqrt(sum_sq)).astype(self.dtype)
            out.append((idx, row))
        return out


class TfidfFeatures:
    """A fitted ``FeatureUnion`` of TF-IDF parts: text → sparse row (parts side by side)."""

    def __init__(self, union: Any) -> None:
        if getattr(union, "transformer_weights", None):
            raise SetupError("sentiment vectorizer: transformer_weights are not supported")
        self.parts = [TfidfPart.from_vectorizer(vec) for _name, vec in union.transformer_list]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts[:-1]]).tolist()

    def rows(self, texts: Sequence[str]) -> list[Row]:
        per_part = [p.rows(texts) for p in self.parts]
        return [(np.concatenate([idx + off for (idx, _), off in zip(pieces, self.offsets)]),
                 np.concatenate([data for _, data in pieces])) for pieces in zip(*per_part)]


class LogisticHead:
    """A fitted ``LogisticRegression``: class probabilities for TF-IDF rows, in the dtype scikit-learn computes
    them in (the fitted coefficients' and the rows' common type: float64 for liblinear, float32 for lbfgs on
    float32 features)."""

    def __init__(self, classes: Sequence[Any], coef: np.ndarray, intercept: np.ndarray) -> None:
        self.classes = tuple(classes)
        self.coef_t = np.ascontiguousarray(np.asarray(coef).T)   # (n_features, k)
        self.intercept = np.asarray(intercept)

    @classmethod
    def from_estimator(cls, lr: Any) -> "LogisticHead":
        return cls(lr.classes_.tolist(), lr.coef_, lr.intercept_)

    def decision(self, rows: Sequence[Row]) -> np.ndarray:
        """``X @ coef.T + intercept`` with each score summed feature by feature in index order, as SciPy's
        CSR product does (values widened to the common type first)."""
        dtype = np.result_type(*(data.dtype for _idx, data in rows[:1]), self.coef_t.dtype)
        scores = np.zeros((len(rows), self.coef_t.shape[1]), dtype=dtype)
        for i, (idx, data) in enumerate(rows):
            if len(idx):
                scores[i] = np.cumsum(data.astype(dtype)[:, None] * self.coef_t[idx], axis=0)[-1]
        return scores + self.intercept

    def proba(self, rows: Sequence[Row]) -> np.ndarray:
        """``predict_proba``: the logistic function for two classes, softmax for more."""
        scores = self.decision(rows)
        if len(self.classes) <= 2:
            if scores.dtype == np.float64:
                pos = np.array([_expit(s) for s in scores[:, 0].tolist()], dtype=np.float64)
            else:
                pos = 1 / (1 + np.exp(-scores[:, 0]))
            return np.stack([1 - pos, pos], axis=1)
        scores -= scores.max(axis=1).reshape(-1, 1)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape(-1, 1)
        return scores


def _expit(x: float) -> float:
    """SciPy's ``expit`` (``1 / (1 + exp(-x))`` with the C library's ``exp``, which ``math.exp`` is)."""
    try:
        return 1.0 / (1.0 + math.exp(-x))
    except OverflowError:   # exp(-x) beyond float range: SciPy gives 1 / inf = 0
        return 0.0
