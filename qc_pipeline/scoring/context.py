"""What rules see: one session's utterances plus cached derived views."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from qc_pipeline.records import Utterance
from qc_pipeline.scoring.textmatch import normalize


@dataclass(frozen=True)
class Hit:
    """Evidence: which turn matched which rule, and the matched text."""

    rule_id: str
    turn_index: int
    role: str
    start: Optional[float]
    end: Optional[float]
    text: str


@dataclass
class SessionContext:
    utterances: Sequence[Utterance]
    duration_s: Optional[float] = None
    # utterance-level sentiment: turn_index -> emotion index 0..100 (filled by the score stage)
    emotion: dict = field(default_factory=dict)
    embed: Optional[Callable[[list[str]], "object"]] = None  # texts -> (n, d) normalized vectors
    _cache: dict = field(default_factory=dict, repr=False)

    @functools.cached_property
    def norm(self) -> list[str]:
        return [normalize(u.text) for u in self.utterances]

    def hit(self, rule_id: str, i: int, text: Optional[str] = None) -> Hit:
        u = self.utterances[i]
        return Hit(rule_id, u.turn_index, u.role, u.start, u.end, text if text is not None else u.text)

    def embedding(self, i: int):
        key = ("emb", i)
        if key not in self._cache:
            self._cache[key] = self.embed([self.utterances[i].text])[0]
        return self._cache[key]
