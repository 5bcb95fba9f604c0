"""Customer emotion and agent attitude for call-center QC.

Three parts, usable on their own:

* :class:`SentimentModel` — a small scikit-learn model (jieba words + char n-gram TF-IDF,
  two logistic-regression heads) trained by ``python scripts/train_sentiment.py`` and applied
  with numpy (:mod:`qc_pipeline.sentiment_tfidf`: same numbers, no scikit-learn in the workers).
  :meth:`SentimentModel.score` turns utterances into :class:`UtteranceSentiment` records:
  probability of negative polarity, 6-class Weibo emotion (``angry``/``fear``/``happy``/
  ``neutral``/``sad``/``surprise``), anger probability and an *emotion index* 0–100
  (100 = very positive/calm, low = upset; calibrated so the mean neutral utterance scores 75 and the
  mean angry one 40: :data:`CALIBRATION_TARGETS`).
* :func:`escalation_cues` — a lexicon detector for complaint-escalation threats (12315, 投诉,
  工信部, 消协, 媒体曝光, 律师/起诉/法院, 报警, 金融监管, 市场监管, 找你们领导 …).  Pure, no model needed.
* :func:`session_emotion` / :func:`agent_attitude` — aggregate utterance scores into a
  per-session customer emotion index (recency weighted; a value under
  :data:`FLAG_THRESHOLD` flags the call) and a per-session agent attitude score.

The artifact is a joblib pickle: load only files you built or trust (its scikit-learn objects are
read as plain fitted state, other scikit-learn classes are refused).  It references
:func:`word_analyzer` and :func:`normalize_text` by name, so keep those importable here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from qc_pipeline.config import ScoringConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.models import models_dir, sha256_file
from qc_pipeline.textnorm import jieba_tokenizer

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "qc-sentiment/1"
ARTIFACT_SUBDIR = "sentiment"
ARTIFACT_NAME = "sentiment-v1.joblib"
CARD_NAME = "card.json"
TRAIN_HINT = "python scripts/train_sentiment.py"
INSTALL_HINT = "pip install jieba joblib"

EMOTIONS = ("angry", "fear", "happy", "neutral", "sad", "surprise")
#: Valence of each emotion class on -1..1, used by :func:`emotion_index`.
EMOTION_VALENCE = (("angry", -1.0), ("fear", -1.0), ("happy", 1.0), ("neutral", 0.0),
                   ("sad", -1.0), ("surprise", 0.0))
#: A session customer emotion index below this flags the call: the default of ``scoring.emotion_flag_below``
#: (config is the one truth; the score stage passes the configured value).
FLAG_THRESHOLD = ScoringConfig().emotion_flag_below
#: Utterance emotion index is capped at this value when an escalation cue is present.
ESCALATION_CAP = 30.0
#: Weight of the polarity head (vs the emotion head) in the emotion index.
POLARITY_WEIGHT = 0.5
#: Calibration targets: the training split's mean raw index of these emotion classes is mapped
#: to these values (linear, clipped to 0..100), so that an ordinary calm utterance scores ~75
#: and an angry one ~40 — the scale on which "customer emotion index < 60" flags a call.
CALIBRATION_TARGETS = (("neutral", 75.0), ("angry", 40.0))
#: Recency half-life, in customer utterances, for :func:`session_emotion`.
RECENCY_HALF_LIFE = 3.0


# ---------------------------------------------------------------------------------------------
# Text features (referenced by the pickled vectorizer: do not rename)
# ---------------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC (full-width → half-width), lower-case, collapse whitespace."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text or "")).strip().lower()


def _get_jieba():
    try:
        return jieba_tokenizer()
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SetupError(f"the sentiment model needs jieba: {INSTALL_HINT}") from e


def word_analyzer(text: str) -> list[str]:
    """jieba words (whitespace dropped) plus adjacent-word bigrams, on normalized text."""
    words = [w for w in _get_jieba().lcut(normalize_text(text)) if w.strip()]
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def split_of(text: str, test_buckets: int = 5) -> str:
    """Deterministic train/test assignment: ``md5(normalize_text(text)) % 5 == 0`` → ``"test"``.

    Hashing the normalized text (not an id) keeps identical texts that occur in several corpora
    on the same side of the split.
    """
    h = int(hashlib.md5(normalize_text(text).encode("utf-8")).hexdigest(), 16)
    return "test" if h % test_buckets == 0 else "train"


# ---------------------------------------------------------------------------------------------
# Escalation lexicon
# ---------------------------------------------------------------------------------------------

#: ``(cue label, regex)`` pairs, matched on :func:`_cue_text` (NFKC, lower-case, whitespace
#: removed, common traditional characters mapped to simplified).  Extend by passing your own
#: tuple to :func:`escalation_cues`.
ESCALATION_LEXICON: tuple[tuple[str, str], ...] = (
    ("12315", r"(?<!\d)12315(?!\d)|[一幺]二三[一幺]五|315热线|消费者热线"),
    ("12345", r"(?<!\d)12345(?!\d)|市长热线|市民热线|政务热线|政府热线"),
    ("投诉", r"投诉|客诉|申诉|举报"),
    ("工信部", r"工信部|工业和信息化部|工业与信息化部|通信管理局|电信管理局"),
    ("消协", r"消协|消费者协会|消保委|消费者权益保护(?:委员会|协会)"),
    ("媒体曝光", r"曝光(?!度|补偿|时间|值|过度|不足|参数|模式|锁定)|(?<!多)媒体(?!文件|播放|库|消息|短信|彩信)|记者|电视台|报社"
                 r"|上新闻|315晚会|发微博|发到网上|发网上|黑猫"),
    ("法律", r"律师|起诉|法院|打官司|诉讼|法律途径|法律程序|走法律|仲裁|告你们|消费者权益保护法|(?<![取撤])消法"),
    ("报警", r"(?<!自动)报警(?!器|灯|声|音|提示)|报案"),
    ("金融监管", r"银保监|银监会|保监会|证监会|金融监管|人民银行|央行"),
    ("市场监管", r"市场监管|市监局|工商局|工商部门|质监|物价局"),
    ("找领导", r"(?:找|叫|让|换|要求|转)[^,.!?;:，。！？；]{0,4}(?:领导|(?<!客户)经理|主管|上级|负责人|老板|班长)"
               r"|(?:领导|经理|主管|上级|负责人)(?:来|出来|过来|接电话)"),
)

# Traditional → simplified for the characters the lexicon uses.
_TRAD = str.maketrans("訴協費權護監銀領導經師報機網記臺視聞門關電聯會級說務業負責處決問題熱線個們讓換緊來過級場質價險託",
                      "诉协费权护监银领导经师报机网记台视闻门关电联会级说务业负责处决问题热线个们让换紧来过级场质价险托")
_NEGATED = re.compile(r"(?:不|没|别|未|无需|不用|不必|不会|不想|不要|没有|并未|不打算)[^,.!?;:，。！？；]{0,2}$")
_NOT_NEGATION = re.compile(r"(?:不然|要不|不行|不能|不给|不解决|不处理|不管|不退|不赔)[^,.!?;:，。！？；]{0,2}$")


def _cue_text(text: str) -> str:
    return re.sub(r"[\s\-_]+", "", normalize_text(text)).translate(_TRAD)


@functools.lru_cache(maxsize=16)
def _compile(lexicon: tuple[tuple[str, str], ...]) -> tuple[tuple[str, re.Pattern], ...]:
    return tuple((label, re.compile(rx)) for label, rx in lexicon)


def escalation_cues(text: str, lexicon: tuple[tuple[str, str], ...] = ESCALATION_LEXICON) -> list[str]:
    """Labels of the escalation cues in ``text``, in lexicon order, each at most once.

    Tolerant to spaces/hyphens inside cues ("1 2 3 1 5"), full-width digits, Chinese-numeral
    "一二三一五"/"幺二三幺五" and common traditional characters.  A cue directly preceded by a
    simple negation ("不投诉", "没有起诉的意思") is ignored, but threats like "不然我就投诉" /
    "不解决就投诉" count.
    """
    s = _cue_text(text)
    found = []
    for label, rx in _compile(tuple(lexicon)):
        for m in rx.finditer(s):
            before = s[max(0, m.start() - 5):m.start()]
            if _NEGATED.search(before) and not _NOT_NEGATION.search(before):
                continue
            found.append(label)
            break
    return found


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtteranceSentiment:
    """Model output for one utterance (all probabilities in 0..1)."""

    negative_prob: float                  # P(negative polarity)
    emotion: str                          # argmax of the emotion head, one of EMOTIONS
    anger_prob: float                     # P(angry) from the emotion head
    emotion_index: float                  # 0..100: 100 very positive/calm, 50 neutral, low = upset
    emotion_probs: tuple[tuple[str, float], ...] = ()   # (label, prob) for every emotion class
    escalation: tuple[str, ...] = ()      # escalation_cues(text)

    @property
    def is_angry(self) -> bool:
        return self.emotion == "angry"


def emotion_index(negative_prob: float, emotion_probs: Iterable[tuple[str, float]],
                  escalation: Sequence[str] = (), polarity_weight: float = POLARITY_WEIGHT,
                  escalation_cap: float | None = ESCALATION_CAP) -> float:
    """Map model probabilities to the 0–100 emotion index.

    ``valence = w·(1 − 2·P(neg))·(1 − P(neutral)) + (1 − w)·Σ P(emotion)·valence(emotion)``
    (valence: happy +1, neutral/surprise 0, angry/sad/fear −1), index = 50 + 50·valence.
    The polarity term is damped by P(neutral) so that factual utterances ("我的订单号是…")
    stay near 50 whatever the binary polarity head says.  If escalation cues are present and
    ``escalation_cap`` is not None, the index is capped at ``escalation_cap``.
    """
    probs = dict(emotion_probs)
    val_emo = sum(probs.get(lbl, 0.0) * v for lbl, v in EMOTION_VALENCE)
    val_pol = (1.0 - 2.0 * negative_prob) * (1.0 - probs.get("neutral", 0.0))
    valence = polarity_weight * val_pol + (1.0 - polarity_weight) * val_emo
    idx = min(100.0, max(0.0, 50.0 + 50.0 * valence))
    if escalation and escalation_cap is not None:
        idx = min(idx, escalation_cap)
    return round(idx, 2)


def calibrate(raw: float, anchors: dict | None) -> float:
    """Map a raw index to the calibrated scale using ``anchors`` = {class: mean raw index on the
    training split} for the classes in :data:`CALIBRATION_TARGETS`.  ``None`` → raw unchanged."""
    if not anchors:
        return raw
    (c_hi, t_hi), (c_lo, t_lo) = CALIBRATION_TARGETS
    a_hi, a_lo = anchors[c_hi], anchors[c_lo]
    if a_hi <= a_lo:
        return raw
    return round(min(100.0, max(0.0, t_hi + (raw - a_hi) * (t_hi - t_lo) / (a_hi - a_lo))), 2)


def recency_weights(n: int, half_life: float = RECENCY_HALF_LIFE) -> tuple[float, ...]:
    """Weights for ``n`` utterances in time order: the last has weight 1, one ``half_life``
    utterances earlier 0.5, …  ``half_life=math.inf`` gives equal weights."""
    if half_life <= 0:
        raise ValueError("half_life must be > 0")
    return tuple(0.5 ** ((n - 1 - i) / half_life) for i in range(n))


def session_emotion(utterance_scores: Sequence[UtteranceSentiment | float],
                    weights: Sequence[float] | None = None,
                    half_life: float = RECENCY_HALF_LIFE) -> float | None:
    """Per-session customer emotion index 0–100: recency-weighted mean of the customer
    utterances' emotion indices (pass them in time order).  ``weights`` overrides the default
    :func:`recency_weights`.  Returns None when there is no customer utterance.
    Below :data:`FLAG_THRESHOLD` the call is flagged (see :func:`is_flagged`)."""
    if not utterance_scores:
        return None
    vals = [s.emotion_index if isinstance(s, UtteranceSentiment) else float(s) for s in utterance_scores]
    w = tuple(weights) if weights is not None else recency_weights(len(vals), half_life)
    if len(w) != len(vals):
        raise ValueError(f"{len(w)} weights for {len(vals)} utterances")
    total = sum(w)
    if total <= 0 or any(x < 0 for x in w):
        raise ValueError("weights must be non-negative with a positive sum")
    return round(sum(v * x for v, x in zip(vals, w)) / total, 2)


def session_escalation(utterance_scores: Sequence[UtteranceSentiment]) -> tuple[str, ...]:
    """Escalation cues over a session's utterances, each once, in order of first appearance."""
    return tuple(dict.fromkeys(c for s in utterance_scores for c in s.escalation))


def is_flagged(session_index: float | None, threshold: float = FLAG_THRESHOLD) -> bool:
    """True when a session's customer emotion index is below ``threshold`` (None → False)."""
    return session_index is not None and session_index < threshold


def agent_attitude(agent_scores: Sequence[UtteranceSentiment]) -> float | None:
    """Agent attitude 0–100 from the agent's utterances: ``100 × mean(1 − P(negative))``
    (polarity head only).  Returns None when the agent said nothing."""
    if not agent_scores:
        return None
    return round(100.0 * sum(1.0 - s.negative_prob for s in agent_scores) / len(agent_scores), 2)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def default_artifact_path() -> Path:
    """``$QC_PIPELINE_MODELS_DIR/sentiment/sentiment-v1.joblib`` (or under ``./models``)."""
    return models_dir() / ARTIFACT_SUBDIR / ARTIFACT_NAME


@dataclass(frozen=True, eq=False)
class SentimentModel:
    """Loaded sentiment artifact.  Build with :meth:`load`; score with :meth:`score`."""

    vectorizer: Any
    polarity: Any          # LogisticRegression, classes_ [0, 1] = [negative, positive]
    emotion: Any           # LogisticRegression, classes_ ⊆ EMOTIONS
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None, verify: bool = True) -> "SentimentModel":
        """Load the artifact (default :func:`default_artifact_path`).  If a ``card.json``
        sits next to it and ``verify`` is true, the artifact's SHA-256 must match the card."""
        p = Path(path).expanduser() if path is not None else default_artifact_path()
        if p.is_dir():
            p = p / ARTIFACT_NAME
        if not p.is_file():
            raise SetupError(f"sentiment model not found at {p}. Train it with `{TRAIN_HINT}` "
                             f"(or set QC_PIPELINE_MODELS_DIR to the folder holding sentiment/{ARTIFACT_NAME}).")
        card, digest = p.parent / CARD_NAME, sha256_file(p)
        if verify and card.is_file():
            want = json.loads(card.read_text("utf-8")).get("artifact", {}).get("sha256")
            if want and digest != want:
                raise SetupError(f"{p} does not match the sha256 in {card}; re-run `{TRAIN_HINT}`.")
        try:
            from qc_pipeline.sentiment_tfidf import load_artifact
            obj = load_artifact(p, digest)
        except ImportError as e:  # pragma: no cover
            raise SetupError(f"the sentiment model needs joblib: {INSTALL_HINT}") from e
        if not isinstance(obj, dict) or obj.get("format") != ARTIFACT_FORMAT:
            raise SetupError(f"{p} is not a {ARTIFACT_FORMAT} artifact; re-run `{TRAIN_HINT}`.")
        pol_classes = [int(c) for c in obj["polarity"].classes_]
        if pol_classes != [0, 1]:
            raise SetupError(f"{p}: polarity head has classes {pol_classes}, expected [0, 1]")
        unknown = set(map(str, obj["emotion"].classes_)) - set(EMOTIONS)
        if unknown:
            raise SetupError(f"{p}: unknown emotion classes {sorted(unknown)}")
        _get_jieba()
        model = cls(obj["vectorizer"], obj["polarity"], obj["emotion"], p.resolve(), dict(obj.get("meta", {})))
        model._heads  # noqa: B018  (build the numpy form now: a bad artifact fails at load, not on a call)
        log.info("loaded sentiment model %s", p)
        return model

    @functools.cached_property
    def _heads(self):
        """(features, polarity head, emotion head) applied with numpy (:mod:`qc_pipeline.sentiment_tfidf`)."""
        from qc_pipeline.sentiment_tfidf import LogisticHead, TfidfFeatures

        return (TfidfFeatures(self.vectorizer), LogisticHead.from_estimator(self.polarity),
                LogisticHead.from_estimator(self.emotion))

    @property
    def emotion_classes(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.emotion.classes_)

    def features(self, texts: Sequence[str]):
        """TF-IDF rows (sorted feature indices, float32 values), one per text."""
        return self._heads[0].rows(list(texts))

    def negative_probs(self, texts: Sequence[str]) -> list[float]:
        """P(negative) for each text (polarity head only)."""
        if not texts:
            return []
        return [float(p) for p in self._heads[1].proba(self.features(texts))[:, 0]]

    def score(self, texts: Sequence[str], escalation_cap: float | None = ESCALATION_CAP, calibrated: bool = True,
              lexicon: tuple[tuple[str, str], ...] = ESCALATION_LEXICON) -> list[UtteranceSentiment]:
        """Score utterances.  Empty/whitespace-only texts get the neutral record
        (P(neg)=0.5, emotion "neutral", index 50) instead of the model's bias."""
        def predict(kept: list[str]):
            _features, polarity, emotion = self._heads
            X = self.features(kept)
            return polarity.proba(X)[:, 0], emotion.proba(X)

        anchors = self.meta.get("calibration") if calibrated else None
        return score_with(texts, predict, self.emotion_classes, anchors, escalation_cap, lexicon)


def score_with(texts: Sequence[str], predict, classes: Sequence[str], anchors: dict | None,
               escalation_cap: float | None, lexicon: tuple[tuple[str, str], ...]) -> list[UtteranceSentiment]:
    """Turn model probabilities into :class:`UtteranceSentiment` records (shared by every backend).
    ``predict(non_empty_texts) -> (P(neg) per text, emotion probabilities (n, len(classes)))``;
    empty/whitespace-only texts get the neutral record instead of the model's bias."""
    texts = list(texts)
    keep = [i for i, t in enumerate(texts) if normalize_text(t)]
    out: list[UtteranceSentiment] = [_NEUTRAL] * len(texts)
    if not keep:
        return out
    neg, emo = predict([texts[i] for i in keep])
    for row, i in enumerate(keep):
        probs = tuple((c, float(emo[row, j])) for j, c in enumerate(classes))
        cues = tuple(escalation_cues(texts[i], lexicon))
        best = max(probs, key=lambda kv: kv[1])[0]
        index = calibrate(emotion_index(float(neg[row]), probs, escalation_cap=None), anchors)
        if cues and escalation_cap is not None:
            index = min(index, escalation_cap)
        out[i] = UtteranceSentiment(negative_prob=float(neg[row]), emotion=best,
                                    anger_prob=dict(probs).get("angry", 0.0), emotion_index=index,
                                    emotion_probs=probs, escalation=cues)
    return out


_NEUTRAL = UtteranceSentiment(negative_prob=0.5, emotion="neutral", anger_prob=0.0, emotion_index=50.0,
                              emotion_probs=tuple((c, 1.0 if c == "neutral" else 0.0) for c in EMOTIONS))
