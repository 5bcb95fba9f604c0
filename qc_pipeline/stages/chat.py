"""Chat stage: a text-chat session's role-marked turns become utterances directly.

One message is one utterance, numbered in order (empty messages dropped), so evidence points at the
message a reviewer sees.  Consecutive messages of one speaker are read together by the scoring rules
(speaker turns, :mod:`qc_pipeline.scoring.context`), not merged here.

Typed chat is converted to simplified characters one character at a time (OpenCC ``t2s``): the
Taiwan-phrasing conversion the ASR stage uses would rewrite already-simplified mainland text
(么 → 幺 breaks every "…么" question; 程序 → 进程, 文件 → 文档).
"""

from __future__ import annotations

from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import CallRecord, Utterance
from qc_pipeline.stages.base import Stage
from qc_pipeline.textnorm import to_simplified_chars


def chat_text(raw: str) -> str:
    """A chat message as an utterance: whitespace runs folded to one space; empty means the turn is dropped."""
    return " ".join(raw.split())

class ChatStage(Stage):
    name = "chat"
    kinds = ("chat",)

    def __init__(self, simplified: bool = True) -> None:
        self.simplified = simplified

    def process(self, record: CallRecord) -> CallRecord:
        utterances = []
        empty = 0
        for turn in record.source.chat_turns:
            text = chat_text(turn.text)
            if not text:
                empty += 1
                continue
            utterances.append(Utterance(
                turn_index=len(utterances), role=turn.role, channel=-1, start=turn.start, end=turn.end,
                text=to_simplified_chars(text) if self.simplified else text, speaker=turn.role))
        if not utterances:
            raise CallError(Reason.BAD_CHAT_SESSION, "chat session has no non-empty turns")
        return record.with_drops({"empty_turn": empty}).replace(utterances=tuple(utterances))
