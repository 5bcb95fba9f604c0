"""What rules see: one session's utterances, grouped into speaker turns, plus cached derived views.

Rules judge *turns*: runs of consecutive utterances of one role.  A chat customer or agent often
sends one thought as several short messages ("您是想" / "取消这个订单吗"); ASR splits a speaker at
pauses.  Same-turn rules (a confirmation cue and a restatement in one turn, a closing formula, an
answer with substance) must see such a run together.  Evidence still names the *utterance*
(message) where the match is, so turn indices in the results keep pointing at what was written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from qc_pipeline.records import KIND_AUDIO, KIND_CHAT, Utterance
from qc_pipeline.scoring.textmatch import normalize, normalize_breaks
from qc_pipeline.scoring.words import word_bounds


@dataclass(frozen=True)
class Hit:
    """Evidence: which utterance matched which rule, and the matched text."""

    rule_id: str
    turn_index: int
    role: str
    start: Optional[float]
    end: Optional[float]
    text: str


@dataclass(frozen=True)
class Turn:
    """A same-speaker run of utterances (one chat message or ASR utterance at least)."""

    pos: int                        # index in SessionContext.turns
    role: str
    members: tuple[int, ...]        # indices into SessionContext.utterances
    text: str                       # member texts joined by newlines
    text_starts: tuple[int, ...]    # where each member begins in ``text``
    norm: str                       # normalize(text): no spaces/punctuation
    norm_starts: tuple[int, ...]    # where each member begins in ``norm``
    breaks: frozenset[int]          # clause ends in ``norm`` (punctuation, spaces, message ends)
    start: Optional[float]
    end: Optional[float]

    def member_at(self, offset: int, normalized: bool = True) -> int:
        """Index (into the utterances) of the member holding character ``offset``."""
        starts = self.norm_starts if normalized else self.text_starts
        k = 0
        for j, s in enumerate(starts):
            if s <= offset:
                k = j
        return self.members[k]


def _build_turns(utterances: Sequence[Utterance]) -> tuple[Turn, ...]:
    groups: list[list[int]] = []
    for i, u in enumerate(utterances):
        if groups and utterances[groups[-1][-1]].role == u.role:
            groups[-1].append(i)
        else:
            groups.append([i])
    turns = []
    for pos, members in enumerate(groups):
        texts, text_starts, norms, norm_starts, breaks = [], [], [], [], set()
        t_at = n_at = 0
        for i in members:
            text = utterances[i].text
            norm, b = normalize_breaks(text)
            text_starts.append(t_at)
            norm_starts.append(n_at)
            breaks.update(n_at + x for x in b)
            texts.append(text)
            norms.append(norm)
            t_at += len(text) + 1
            n_at += len(norm)
        us = [utterances[i] for i in members]
        starts = [u.start for u in us if u.start is not None]
        ends = [u.end for u in us if u.end is not None]
        turns.append(Turn(pos=pos, role=us[0].role, members=tuple(members), text="\n".join(texts),
                          text_starts=tuple(text_starts), norm="".join(norms), norm_starts=tuple(norm_starts),
                          breaks=frozenset(breaks), start=min(starts) if starts else None,
                          end=max(ends) if ends else None))
    return tuple(turns)


@dataclass
class SessionContext:
    utterances: Sequence[Utterance]
    duration_s: Optional[float] = None
    # utterance-level sentiment: turn_index -> emotion index 0..100 (filled by the score stage)
    emotion: dict = field(default_factory=dict)
    embed: Optional[Callable[[list[str]], "object"]] = None  # texts -> (n, d) normalized vectors
    # call metadata: "audio" | "chat" (None: chat when no utterance has an audio channel), and whether
    # the caller's identity was verified upstream (IVR, logged-in chat; None = unknown)
    channel: Optional[str] = None
    caller_verified: Optional[bool] = None
    # the summarize stage's result (call type, duration target) and, when an LLM is configured and the card
    # has ``llm`` rules, the per-session LLM runtime (scoring.operators.llm.LlmRuntime)
    summary: Optional[object] = None
    llm: Optional[object] = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.channel is None:
            self.channel = KIND_CHAT if all(u.channel < 0 for u in self.utterances) else KIND_AUDIO

    @functools.cached_property
    def turns(self) -> tuple[Turn, ...]:
        return _build_turns(self.utterances)

    @functools.cached_property
    def turn_of(self) -> dict[int, Turn]:
        """turn_index of every utterance -> the speaker turn holding it."""
        return {self.utterances[i].turn_index: t for t in self.turns for i in t.members}

    @functools.cached_property
    def norm(self) -> list[str]:
        """Per utterance normalized text."""
        return [normalize(u.text) for u in self.utterances]

    @functools.cached_property
    def low_confidence(self) -> frozenset[int]:
        """turn_index of every utterance whose transcript the ASR stage marked as uncertain."""
        return frozenset(u.turn_index for u in self.utterances if u.low_confidence)

    def hit(self, rule_id: str, i: int, text: Optional[str] = None) -> Hit:
        """Evidence on utterance ``i`` (index into ``utterances``)."""
        u = self.utterances[i]
        return Hit(rule_id, u.turn_index, u.role, u.start, u.end, text if text is not None else u.text)

    def turn_hit(self, rule_id: str, turn: Turn, text: Optional[str] = None) -> Hit:
        """Evidence on a whole turn: named by its first utterance."""
        return self.hit(rule_id, turn.members[0], text)

    def uncertain(self, turns: Sequence[Turn]) -> tuple[int, ...]:
        """turn_index of the low-confidence utterances inside ``turns``."""
        low = self.low_confidence
        if not low:
            return ()
        return tuple(self.utterances[i].turn_index for t in turns for i in t.members
                     if self.utterances[i].turn_index in low)

    def word_bounds(self, turn: Turn, lexicon: tuple[str, ...] = ()) -> frozenset[int]:
        """Word boundaries in ``turn.norm`` (see :func:`qc_pipeline.scoring.words.word_bounds`)."""
        key = ("bounds", turn.pos, lexicon)
        if key not in self._cache:
            self._cache[key] = word_bounds(turn.norm, lexicon)
        return self._cache[key]

    def embedding(self, pos: int):
        """Sentence embedding of turn ``pos``."""
        key = ("emb", pos)
        if key not in self._cache:
            self._cache[key] = self.embed([self.turns[pos].text])[0]
        return self._cache[key]
