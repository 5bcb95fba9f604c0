"""Turn classifiers for the ``classifier`` rule operator.

A turn classifier is a character n-gram TF-IDF with a logistic-regression head, fitted with
scikit-learn by ``scripts/train_turn_model.py`` on hand-labelled turns and stored as plain JSON
(no pickle, so loading a model file runs no code).  It is applied here with numpy, step by step as
scikit-learn's ``TfidfVectorizer(analyzer="char")`` and ``LogisticRegression`` do:
whitespace runs folded to one space, optional lower-casing, every n-gram of each length in
``ngram_range``, sublinear term frequency, IDF, L2 norm, then ``sigmoid(x · coef + intercept)``.
``tests/test_turn_model.py`` checks the probabilities against scikit-learn's own.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

FORMAT = "qc-pipeline/turn-classifier/1"
_WHITE_SPACES = re.compile(r"\s\s+")   # scikit-learn's char analyzer folds these


class TurnModelError(ValueError):
    """The file is not a usable turn-classifier model (the message says why)."""


@dataclass(frozen=True, eq=False)
class TurnModel:
    path: Path
    ngram_range: tuple[int, int]
    lowercase: bool
    sublinear_tf: bool
    vocabulary: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
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
            lowercase, sublinear = bool(obj["lowercase"]), bool(obj["sublinear_tf"])
        except (KeyError, TypeError, ValueError) as e:
            raise TurnModelError(f"{path}: missing or malformed field ({e})") from None
        n = len(vocab)
        if not 1 <= lo <= hi or idf.shape != (n,) or coef.shape != (n,) or sorted(vocab.values()) != list(range(n)):
            raise TurnModelError(f"{path}: vocabulary, idf and coef do not fit together")
        return cls(path, (lo, hi), lowercase, sublinear, vocab, idf, coef, intercept, dict(obj.get("meta", {})))

    @classmethod
    def load(cls, path: str | Path) -> "TurnModel":
        p = Path(path)
        try:
            obj = json.loads(p.read_text("utf-8"))
        except OSError as e:
            raise TurnModelError(f"cannot read {p}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise TurnModelError(f"{p} is not JSON ({e})") from None
        return cls.from_dict(obj, p)

    def ngrams(self, text: str) -> list[str]:
        """The character n-grams scikit-learn's ``analyzer="char"`` makes of ``text``."""
        text = _WHITE_SPACES.sub(" ", text.lower() if self.lowercase else text)
        lo, hi = self.ngram_range
        return [text[i:i + n] for n in range(lo, min(hi, len(text)) + 1) for i in range(len(text) - n + 1)]

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive class) for each text."""
        out = np.empty(len(texts), dtype=np.float64)
        for k, text in enumerate(texts):
            counts = Counter(self.vocabulary[g] for g in self.ngrams(text) if g in self.vocabulary)
            if counts:
                idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
                tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
                if self.sublinear_tf:
                    tf = np.log(tf) + 1.0
                x = tf * self.idf[idx]
                z = float(x @ self.coef[idx]) / float(np.sqrt(x @ x)) + self.intercept
            else:
                z = self.intercept
            out[k] = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        return out


def to_dict(vectorizer: Any, lr: Any, meta: dict) -> dict:
    """A fitted scikit-learn ``TfidfVectorizer(analyzer="char", norm="l2")`` and binary
    ``LogisticRegression`` as the JSON this module reads (used by the training script)."""
    if vectorizer.analyzer != "char" or vectorizer.norm != "l2" or not vectorizer.use_idf:
        raise TurnModelError("only TfidfVectorizer(analyzer='char', norm='l2', use_idf=True) is supported")
    if len(lr.classes_) != 2:
        raise TurnModelError("only a binary LogisticRegression is supported")
    vocab = {k: int(v) for k, v in vectorizer.vocabulary_.items()}
    return {"format": FORMAT, "ngram_range": list(vectorizer.ngram_range), "lowercase": bool(vectorizer.lowercase),
            "sublinear_tf": bool(vectorizer.sublinear_tf), "vocabulary": vocab,
            "idf": [float(x) for x in vectorizer.idf_], "coef": [float(x) for x in lr.coef_[0]],
            "intercept": float(lr.intercept_[0]), "meta": meta}


@functools.lru_cache(maxsize=16)
def load_turn_model(path: str) -> TurnModel:
    """One loaded copy per process and file."""
    return TurnModel.load(path)
