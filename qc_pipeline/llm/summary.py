"""Ask the LLM for a session summary, call type, call reason and resolved; validate against the config's names.

Long sessions are asked chunk by chunk and merged: problem and reason from the first chunk, the agent's
actions joined, outcome and resolved from the last chunk, and the call type that comes first in
``summary.call_types`` order (投诉 outranks 咨询 by default).  Any failed chunk makes the whole answer an error
(the stage then keeps its keyword call type / reason and flags ``llm_error``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from qc_pipeline.config import SummaryConfig
from qc_pipeline.llm import client as C
from qc_pipeline.llm.judge import parse_json_object
from qc_pipeline.llm.prompts import chunk_transcript, summary_messages
from qc_pipeline.records import Utterance

_TRUE = {"true", "yes", "是", "已解决", "解决"}
_FALSE = {"false", "no", "否", "未解决", "没有解决"}


@dataclass(frozen=True)
class SummaryAnswer:
    fields: dict = field(default_factory=dict)
    requests: int = 0
    error: Optional[str] = None
    detail: str = ""


def _pick(value, names: Sequence[str]) -> Optional[str]:
    """A config name: exact, or the only name contained in the model's value (咨询类 → 咨询)."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if value in names:
        return value
    inside = [n for n in names if n in value]
    return inside[0] if len(inside) == 1 else None


def _resolved(value) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        return True if v in _TRUE else False if v in _FALSE else None
    return None


def _text(value) -> Optional[str]:
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_summary(text: str, cfg: SummaryConfig) -> Optional[dict]:
    obj = parse_json_object(text)
    if obj is None:
        return None
    call_type = _pick(obj.get("call_type"), list(cfg.call_types))
    reason = _pick(obj.get("reason"), list(cfg.reasons))
    resolved = _resolved(obj.get("resolved"))
    if call_type is None or reason is None or resolved is None:
        return None
    return dict(call_type=call_type, reason=reason, reason_text=_text(obj.get("reason_text")),
                problem=_text(obj.get("problem")), action=_text(obj.get("action")),
                outcome=_text(obj.get("outcome")), resolved=resolved)


def ask_summary(client: C.LlmClient, session: Optional[C.LlmSession], utterances: Sequence[Utterance],
                cfg: SummaryConfig) -> SummaryAnswer:
    chunks = chunk_transcript(utterances, client.cfg.max_prompt_chars)
    if session is not None and session.budget.left < len(chunks):
        return SummaryAnswer(error=C.BUDGET, detail=f"{len(chunks)} chunks, {session.budget.left} requests left")
    parts: list[dict] = []
    for n, chunk in enumerate(chunks, 1):
        reply = client.chat(summary_messages(chunk, list(cfg.call_types), list(cfg.reasons)), session)
        got = parse_summary(reply.text, cfg) if reply.ok else None
        if got is None:
            return SummaryAnswer(requests=n, error=reply.error or C.BAD_ANSWER, detail=reply.detail or (reply.text or "")[:80])
        parts.append(got)
    order = list(cfg.call_types)
    actions = [p["action"] for p in parts if p["action"]]
    merged = dict(parts[0])
    merged.update(call_type=min((p["call_type"] for p in parts), key=order.index),
                  action="；".join(dict.fromkeys(actions)) or None,
                  outcome=parts[-1]["outcome"], resolved=parts[-1]["resolved"],
                  call_type_source="llm", reason_source="llm")
    return SummaryAnswer(fields=merged, requests=len(chunks))
