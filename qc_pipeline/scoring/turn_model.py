"""Turn classifiers for the ``classifier`` rule operator.

A turn classifier is a character n-gram TF-IDF with a binary logistic-regression head, fitted with
scikit-learn by ``scripts/train_turn_model.py`` on hand-labelled turns and stored as plain JSON
(no pickle, so loading a model file runs no code).  It is applied with the sentiment model's numpy
implementation of the same two estimators (:mod:`qc_pipeline.sentiment_tfidf`: ``TfidfPart`` and
``LogisticHead``), which computes scikit-learn's numbers operation by operation;
``tests/test_turn_model.py`` checks them against scikit-learn's own.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qc_pipeline.sentiment_tfidf import LogisticHead, TfidfPart, char_ngrams, unsupported_tfidf

FORMAT = "qc-pipeline/turn-classifier/1"
log = logging.getLogger(__name__)


class TurnModelError(ValueError):
    """The file is not a usable turn-classifier model (the message says why)."""


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, eq=False)
class TurnModel:
    path: Path
    features: TfidfPart
    head: LogisticHead
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any, path: Path) -> "TurnModel":
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise TurnModelError(f"{path} is not a {FORMAT} file (made by scripts/train_turn_model.py)")
        try:
            lo, hi = (int(x) for x in obj["ngram_range"])
            vocab = {str(k): int(v) for k, v in obj["vocabulary"].items()}
            idf = np.asarray(obj["idf"], dtype=np.float64)
            coef = np.asarray(obj["coef"], dtype=np.float64)
            intercept = float(obj["intercept"])
            lowercase = bool(obj["lowercase"])
            meta = dict(obj.get("meta") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TurnModelError(f"{path}: missing or malformed field ({e})") from None
        n = len(vocab)
        if not 1 <= lo <= hi or idf.shape != (n,) or coef.shape != (n,) or sorted(vocab.values()) != list(range(n)):
            raise TurnModelError(f"{path}: vocabulary, idf and coef do not fit together")
        analyze = char_ngrams(str.lower if lowercase else _identity, (lo, hi))
        return cls(path, TfidfPart(vocab, idf, np.float64, analyze),
                   LogisticHead((0, 1), coef.reshape(1, -1), np.array([intercept])), meta)

    @classmethod
    def load(cls, path: str | Path) -> "TurnModel":
        p = Path(path)
        try:
            obj = json.loads(p.read_text("utf-8"))
        except OSError as e:
            raise TurnModelError(f"cannot read {p}: {e.strerror or e}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TurnModelError(f"{p} is not a JSON turn-classifier file ({e})") from None
        model = cls.from_dict(obj, p)
        log.info("loaded turn classifier %s (%d n-grams)", p, len(model.features.vocabulary))
        return model

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive class) for each text."""
        if not texts:
            return np.zeros(0)
        return self.head.proba(self.features.rows(texts))[:, 1]


def to_dict(vectorizer: Any, lr: Any, meta: dict) -> dict:
    """A fitted scikit-learn ``TfidfVectorizer(analyzer="char")`` (float64, the settings
    :data:`~qc_pipeline.sentiment_tfidf.SUPPORTED_TFIDF` lists) and binary ``LogisticRegression`` as the JSON
    this module reads (used by the training script)."""
    bad = unsupported_tfidf(vectorizer)
    if bad or vectorizer.analyzer != "char" or vectorizer.preprocessor is not None \
            or np.dtype(vectorizer.dtype) != np.float64 or vectorizer.strip_accents is not None:
        raise TurnModelError(f"unsupported TfidfVectorizer ({bad or 'analyzer, preprocessor, dtype or accents'}): "
                             "use analyzer='char', float64, sublinear_tf=True, norm='l2'")
    if len(lr.classes_) != 2:
        raise TurnModelError("only a binary LogisticRegression is supported")
    return {"format": FORMAT, "ngram_range": list(vectorizer.ngram_range), "lowercase": bool(vectorizer.lowercase),
            "vocabulary": {k: int(v) for k, v in vectorizer.vocabulary_.items()},
            "idf": [float(x) for x in vectorizer.idf_], "coef": [float(x) for x in lr.coef_[0]],
            "intercept": float(lr.intercept_[0]), "meta": meta}


@functools.lru_cache(maxsize=16)
def load_turn_model(path: str) -> TurnModel:
    """One loaded copy per process and file."""
    return TurnModel.load(path)
