"""Acoustic operators (audio only; chat without times never matches).

    silence:     {over_s: 8}                        gaps between turns
    overtalk:    {over_s: 1.5}                      overlapping speech of both roles
    speech_rate: {over: 6.0 | under: 1.5, min_turn_s: 2.0}   characters per second in an utterance

A silence is evidence on the utterance that ends it (``role: agent``: the agent was slow to answer), an
overtalk on the utterance that started while the other side was speaking (the interruption); the scope
keys (role, window, after/before, where/unless) select those utterances like any other rule's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.context import Hit
from qc_pipeline.scoring.operators.base import Node, Outcome


@dataclass(frozen=True)
class _OverSeconds(Node):
    over_s: float = 0.0

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("over_s",), required=("over_s",))
        return cls(rule_id=rule_id, scope=scope, over_s=c.number(body["over_s"], f"{key}.over_s", 0, 3600))

    def _in_scope(self, ctx, hits: list[Hit]) -> Outcome:
        """The hits on utterances of the scope's candidate turns."""
        if self.scope != type(self.scope)():
            allowed = {ctx.utterances[i].turn_index for t in self.scope.candidates(ctx) for i in t.members}
            hits = [h for h in hits if h.turn_index in allowed]
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Silence(_OverSeconds):
    op = "silence"

    def _evaluate(self, ctx):
        utts = [u for u in ctx.utterances if u.start is not None]
        hits, heard_until = [], None
        for a, b in zip(utts, utts[1:]):
            heard_until = a.end if heard_until is None else max(heard_until, a.end)   # overlapping speech
            gap = b.start - heard_until
            if gap > self.over_s:
                hits.append(Hit(self.rule_id, b.turn_index, b.role, a.end, b.start, f"silence {gap:.1f}s"))
        return self._in_scope(ctx, hits)


@dataclass(frozen=True)
class Overtalk(_OverSeconds):
    op = "overtalk"

    def _evaluate(self, ctx):
        utts = [u for u in ctx.utterances if u.start is not None]
        hits = []
        for i, a in enumerate(utts):
            for b in utts[i + 1:]:
                if b.start >= a.end:
                    break
                if a.role != b.role:
                    overlap = min(a.end, b.end) - b.start
                    if overlap > self.over_s:
                        hits.append(Hit(self.rule_id, b.turn_index, b.role, b.start, min(a.end, b.end),
                                        f"overtalk {overlap:.1f}s | {b.text}"))
        return self._in_scope(ctx, hits)


@dataclass(frozen=True)
class SpeechRate(Node):
    op = "speech_rate"
    over: Optional[float] = None
    under: Optional[float] = None
    min_turn_s: float = 2.0

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("over", "under", "min_turn_s"))
        if "over" not in body and "under" not in body:
            raise c.err(key, "needs 'over' or 'under' (characters per second)")
        return cls(rule_id=rule_id, scope=scope,
                   over=c.number(body["over"], f"{key}.over", 0, 50) if "over" in body else None,
                   under=c.number(body["under"], f"{key}.under", 0, 50) if "under" in body else None,
                   min_turn_s=c.number(body.get("min_turn_s", 2.0), f"{key}.min_turn_s", 0, 600))

    def _evaluate(self, ctx):
        hits = []
        for t in self.scope.candidates(ctx):
            for i in t.members:
                u = ctx.utterances[i]
                if u.start is None or u.end is None or u.end - u.start < self.min_turn_s:
                    continue
                rate = len(ctx.norm[i]) / (u.end - u.start)
                if (self.over is not None and rate > self.over) or (self.under is not None and rate < self.under):
                    hits.append(ctx.hit(self.rule_id, i, f"{rate:.1f} chars/s | {u.text}"))
        return Outcome(bool(hits), tuple(hits))
