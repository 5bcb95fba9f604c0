"""Summarize stage: per session a summary (problem / what the agent did / outcome), the call type
(咨询/投诉/建议/办理), the call reason (a taxonomy from config + free text), resolved yes/no, and the
operations manual's handling-time target for that call type (session flag ``over_duration_target``).

With an LLM configured (``llm.base_url``, ``summary.use_llm``) the model fills everything; its call type and
reason must be names from ``summary.call_types`` / ``summary.reasons``.  Without one — or when the LLM fails,
which adds the session flag ``llm_error`` — keywords in the customer's turns fill call type and reason and the
summary / resolved stay empty.  Runs before scoring, so a card can use the call type.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

from qc_pipeline.config import PipelineConfig, SummaryConfig
from qc_pipeline.llm import FLAG_LLM_ERROR
from qc_pipeline.records import ROLE_CUSTOMER, CallRecord, Utterance
from qc_pipeline.stages.base import Stage

log = logging.getLogger(__name__)

FLAG_OVER_TARGET = "over_duration_target"


@dataclass(frozen=True)
class Summary:
    call_type: str
    call_type_source: str                 # llm | keywords
    reason: str
    reason_text: Optional[str]
    reason_source: str                    # llm | keywords
    problem: Optional[str] = None
    action: Optional[str] = None
    outcome: Optional[str] = None
    resolved: Optional[bool] = None
    duration_s: Optional[float] = None
    duration_target_s: Optional[float] = None
    over_duration_target: Optional[bool] = None
    llm_model: Optional[str] = None
    llm_requests: int = 0
    llm_error: Optional[str] = None


def _default(names: dict) -> str:
    return next((n for n, kws in names.items() if not kws), list(names)[-1])


def classify_call_type(texts: Sequence[str], call_types: dict) -> str:
    """First type (in config order) with a keyword in the customer's text; else the type with no keywords."""
    joined = "\n".join(texts)
    for name, kws in call_types.items():
        if any(k in joined for k in kws):
            return name
    return _default(call_types)


def classify_reason(texts: Sequence[str], reasons: dict) -> tuple[str, Optional[str]]:
    """(reason with the most keyword hits — ties: config order —, the first customer turn that hit it)."""
    best, best_n = _default(reasons), 0
    for name, kws in reasons.items():
        n = sum(t.count(k) for t in texts for k in kws)
        if n > best_n:
            best, best_n = name, n
    first = next((t for t in texts if any(k in t for k in reasons.get(best, ()))), None)
    return best, first


def session_duration(record: CallRecord) -> Optional[float]:
    if record.audio_info is not None:
        return record.audio_info.duration_s
    times = [(u.start, u.end) for u in record.utterances if u.start is not None]
    if not times:
        return None
    return max((e if e is not None else s) for s, e in times) - min(s for s, _ in times)


def _texts(utts: Sequence[Utterance]) -> list[str]:
    cust = [u.text for u in utts if u.role == ROLE_CUSTOMER]
    return cust or [u.text for u in utts]    # role unknown (mono without diarizer): all turns


class SummarizeStage(Stage):
    name = "summarize"
    kinds = ("audio", "chat")

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg: SummaryConfig = cfg.summary
        self.llm_cfg = cfg.llm
        self.client = None

    def setup(self) -> None:
        if self.cfg.use_llm and self.llm_cfg.base_url:
            from qc_pipeline.llm.client import get_client

            self.client = get_client(self.llm_cfg)

    def process(self, record: CallRecord) -> CallRecord:
        utts = record.utterances
        texts = _texts(utts)
        call_type = classify_call_type(texts, self.cfg.call_types)
        reason, reason_text = classify_reason(texts, self.cfg.reasons)
        fields: dict = dict(call_type=call_type, call_type_source="keywords", reason=reason,
                            reason_text=reason_text, reason_source="keywords")
        if self.client is not None and utts:
            from qc_pipeline.llm.summary import ask_summary

            got = ask_summary(self.client, self.client.session(record.call_id), utts, self.cfg)
            fields.update(got.fields)
            fields.update(llm_model=self.llm_cfg.model, llm_requests=got.requests, llm_error=got.error)
        duration = session_duration(record)
        target_min = self.cfg.duration_targets_min.get(fields["call_type"])
        target = target_min * 60.0 if target_min is not None else None
        over = None if duration is None or target is None else duration > target
        summary = Summary(**fields, duration_s=duration, duration_target_s=target, over_duration_target=over)
        out = record.replace(summary=summary)
        if over:
            out = out.with_flag(FLAG_OVER_TARGET)
        if summary.llm_error:
            out = out.with_flag(FLAG_LLM_ERROR)
        return out
