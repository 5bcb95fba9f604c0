"""Typed records that flow through the stages.

One :class:`CallRecord` per call or chat session travels through the stage list;
stages return a new record (``dataclasses.replace``) instead of mutating their input.
Time intervals carry their ``channel`` (lhotse-style), so stereo calls are processed
per channel and never downmixed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

ROLE_AGENT = "agent"
ROLE_CUSTOMER = "customer"
ROLE_UNKNOWN = "unknown"
ROLES = (ROLE_AGENT, ROLE_CUSTOMER, ROLE_UNKNOWN)

KIND_AUDIO = "audio"
KIND_CHAT = "chat"

# session flag: the ASR stage sets it (low-confidence share) and the scoring engine too (an item decided on
# low-confidence text); either puts the session in the review queue
FLAG_LOW_ASR_CONFIDENCE = "low_asr_confidence"

STATUS_OK = "ok"
STATUS_FAILED = "failed"



def item_lost(applicable: bool, points: float, max_points: float, vetoed: bool) -> bool:
    """Whether a scorecard item counts as lost (item flags, the review queue, reports): applicable and below
    full points, or vetoed.  The review app's read model says the same in SQL (``web/readmodel.py``)."""
    return bool(applicable) and (points < max_points or bool(vetoed))

@dataclass(frozen=True)
class ChatTurn:
    role: str
    text: str
    start: Optional[float] = None  # seconds since session start, when the chat export has times
    end: Optional[float] = None


@dataclass(frozen=True)
class CallSource:
    """What the input side knows about one call before any processing."""

    call_id: str
    kind: str = KIND_AUDIO
    path: Optional[str] = None
    agent_id: Optional[str] = None
    team: Optional[str] = None
    queue: Optional[str] = None
    started_at: Optional[dt.datetime] = None   # time zone aware (naive inputs: run.input_timezone)
    channel_layout: str = "auto"  # auto | mono | agent_left | agent_right
    chat_turns: tuple[ChatTurn, ...] = ()
    # Call metadata: the caller's identity was already verified upstream (IVR, logged-in chat); the
    # scorecard's identity-check rule does not apply.  None = unknown (the card's setting decides).
    caller_verified: Optional[bool] = None
    # An input problem found while reading the manifest; the call becomes an error row.
    input_error: Optional[tuple[str, str]] = None


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int          # of the original file
    channels: int             # of the original file
    duration_s: float         # decoded duration
    codec: str
    container: str
    truncated: bool = False   # decoded less than the header claimed


@dataclass(frozen=True)
class SpeechSpan:
    """A stretch of speech on one channel (from VAD), with its speaker label."""

    channel: int
    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Utterance:
    turn_index: int
    role: str
    channel: int            # -1 for chat
    start: Optional[float]
    end: Optional[float]
    text: str
    speaker: str = ""
    avg_logprob: Optional[float] = None
    no_speech_prob: Optional[float] = None
    words: tuple[Word, ...] = ()
    emotion_index: Optional[float] = None   # 0..100, 100 = calm/positive (score stage)
    emotion: Optional[str] = None
    # ASR stage (audio only): the text of this turn is uncertain (low avg log-prob / word probabilities);
    # scoring must not silently cost the agent points on it.  Always False for chat.
    low_confidence: bool = False


def low_confidence_share(utterances: tuple[Utterance, ...]) -> Optional[float]:
    """Share of transcribed speech time (utterance durations) in low-confidence utterances; None without any
    timed utterance (chat).  The ASR stage flags the session from it; the sessions table stores it."""
    timed = [u for u in utterances if u.start is not None and u.end is not None and u.channel >= 0]
    total = sum(u.end - u.start for u in timed)
    if not timed or total <= 0:
        return None
    return round(sum(u.end - u.start for u in timed if u.low_confidence) / total, 4)


@dataclass(frozen=True)
class CallRecord:
    source: CallSource
    status: str = STATUS_OK
    error_reason: Optional[str] = None
    error_detail: Optional[str] = None
    audio_info: Optional[AudioInfo] = None
    # (channels, samples) float32 at 16 kHz; transient, never written out.
    audio: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    agent_channel: Optional[int] = None
    spans: tuple[SpeechSpan, ...] = ()
    utterances: tuple[Utterance, ...] = ()
    flags: tuple[str, ...] = ()
    # counters of things dropped on purpose, by reason (e.g. "short_span", "hallucination_credit")
    drops: tuple[tuple[str, int], ...] = ()
    timings: tuple[tuple[str, float], ...] = ()
    role_confidence: Optional[float] = None   # role stage: how sure the agent/customer split is
    # filled by the score stage
    score: Optional[object] = field(default=None, compare=False)   # scoring.engine.SessionScore
    customer_emotion_index: Optional[float] = None
    agent_attitude_index: Optional[float] = None
    escalation: tuple[str, ...] = ()
    # filled by the summarize stage: stages.summarize.Summary
    summary: Optional[object] = field(default=None, compare=False)

    @property
    def call_id(self) -> str:
        return self.source.call_id

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def replace(self, **changes) -> "CallRecord":
        return dataclasses.replace(self, **changes)

    def with_flag(self, flag: str) -> "CallRecord":
        return self if flag in self.flags else self.replace(flags=self.flags + (flag,))

    def with_drops(self, counts: dict[str, int]) -> "CallRecord":
        merged = dict(self.drops)
        for key, n in counts.items():
            if n:
                merged[key] = merged.get(key, 0) + n
        return self.replace(drops=tuple(sorted(merged.items())))

    def failed(self, reason: str, detail: str) -> "CallRecord":
        return self.replace(status=STATUS_FAILED, error_reason=reason, error_detail=detail, audio=None)
