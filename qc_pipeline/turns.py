"""Speech spans → turns, and words → turns by time overlap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from qc_pipeline.records import SpeechSpan


@dataclass(frozen=True)
class Turn:
    channel: int
    speaker: str
    start: float
    end: float


def build_turns(spans: Sequence[SpeechSpan], max_gap_s: float) -> list[Turn]:
    """Merge time-ordered spans into turns: consecutive spans of one speaker on one channel
    closer than ``max_gap_s`` are one turn; another speaker starting in between ends it."""
    turns: list[Turn] = []
    for span in sorted(spans, key=lambda s: (s.start, s.channel)):
        last = turns[-1] if turns else None
        if (last is not None and last.speaker == span.speaker and last.channel == span.channel
                and span.start - last.end <= max_gap_s):
            turns[-1] = Turn(last.channel, last.speaker, last.start, max(last.end, span.end))
        else:
            turns.append(Turn(span.channel, span.speaker, span.start, span.end))
    return turns


def assign_to_turn(turns: Sequence[Turn], channel: int, start: float, end: float, speaker: str | None = None) -> int:
    """Index of the turn on ``channel`` (and ``speaker`` if given) that overlaps [start, end] most,
    or is nearest when none overlaps; -1 if the channel has no turns."""
    best, best_key = -1, None
    for i, t in enumerate(turns):
        if t.channel != channel or (speaker is not None and t.speaker != speaker):
            continue
        overlap = min(end, t.end) - max(start, t.start)
        distance = 0.0 if overlap > 0 else max(t.start - end, start - t.end)
        key = (-overlap if overlap > 0 else 0.0, distance)
        if best_key is None or key < best_key:
            best, best_key = i, key
    return best
