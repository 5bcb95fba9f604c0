"""What every rule operator shares: the outcome, the scope keys, the node base class, card settings.

A rule node is a mapping with exactly one operator key plus optional scope keys:

  role: agent|customer|any
  window: {first_turns|last_turns: N} | {first_s|last_s: S} | {first_pct|last_pct: P}
  after: NODE / before: NODE   only turns after the first hit of ``after`` / before the first hit of
                               ``before`` (with both: the first ``before`` hit after the ``after`` hit)
  where: NODE                  only turns where NODE hits (e.g. a costly semantic check on cue turns only)
  unless: NODE                 only turns where NODE does not hit

Scopes and windows count *turns*: runs of consecutive utterances of one speaker (see
:mod:`qc_pipeline.scoring.context`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from qc_pipeline.scoring.context import Hit, SessionContext, Turn
from qc_pipeline.scoring.words import NEGATION_CUES, NEGATION_MAX_GAP

if TYPE_CHECKING:
    from qc_pipeline.scoring.operators.compiler import Compiler


@dataclass(frozen=True)
class Settings:
    """Card-wide matching settings (``settings:`` in the card YAML)."""

    lexicon: tuple[str, ...] = ()              # extra words for word-boundary matching
    homophone_clash_min_freq: int = 500        # a homophone this common (jieba frequency) turns fuzz off
    negation_cues: tuple[str, ...] = NEGATION_CUES
    negation_max_gap: int = NEGATION_MAX_GAP
    caller_verified: Optional[bool] = None     # assumed when a call's metadata does not say


@dataclass(frozen=True)
class Outcome:
    matched: bool
    hits: tuple[Hit, ...] = ()
    # turn_index of low-confidence (ASR) utterances the rule looked at without finding what it
    # looks for: its verdict there rests on uncertain text
    uncertain: tuple[int, ...] = ()


WINDOW_KINDS = ("first_turns", "last_turns", "first_s", "last_s", "first_pct", "last_pct")
SCOPE_KEYS = ("role", "window", "after", "before", "where", "unless")


@dataclass(frozen=True)
class Scope:
    role: str = "any"
    window: Optional[tuple[str, float]] = None
    after: Optional["Node"] = None
    before: Optional["Node"] = None
    where: Optional["Node"] = None
    unless: Optional["Node"] = None

    def nodes(self) -> tuple["Node", ...]:
        return tuple(n for n in (self.after, self.before, self.where, self.unless) if n is not None)

    def narrowed(self, outer: "Scope") -> "Scope":
        """This scope narrowed by ``outer`` (a named rule used with extra scope keys): role, window, after and
        before that ``outer`` sets replace this scope's; its where / unless are added to this scope's (a turn
        must pass both where filters, and either unless drops it)."""
        return Scope(role=outer.role if outer.role != "any" else self.role,
                     window=outer.window or self.window, after=outer.after or self.after,
                     before=outer.before or self.before, where=_joined(outer.where, self.where, every=True),
                     unless=_joined(outer.unless, self.unless, every=False))

    def candidates(self, ctx: SessionContext) -> list[Turn]:
        turns = [t for t in ctx.turns if self.role == "any" or t.role == self.role]
        if self.window:
            turns = _apply_window(ctx, turns, *self.window)
        first_after = None
        if self.after is not None:
            first_after = _first_turn(self.after.evaluate(ctx))
            if first_after is None:
                return []
            turns = [t for t in turns if _last(ctx, t) > first_after]
        if self.before is not None:
            out = self.before.evaluate(ctx)
            marks = [h.turn_index for h in out.hits if first_after is None or h.turn_index > first_after]
            if out.matched and marks:
                turns = [t for t in turns if _first(ctx, t) < min(marks)]
        if self.where is not None:
            keep = _hit_runs(ctx, self.where.evaluate(ctx))
            turns = [t for t in turns if t.pos in keep]
        if self.unless is not None:
            drop = _hit_runs(ctx, self.unless.evaluate(ctx))
            turns = [t for t in turns if t.pos not in drop]
        return turns


def _joined(outer: Optional["Node"], inner: Optional["Node"], every: bool) -> Optional["Node"]:
    """Two filters as one: both hit the turn (``every``) or either does."""
    if outer is None or inner is None or outer is inner:
        return outer or inner
    from qc_pipeline.scoring.operators.combinators import AllOf, AnyOf

    if every:
        return AllOf(rule_id=outer.rule_id, items=(outer, inner), same_turn=True)
    return AnyOf(rule_id=outer.rule_id, items=(outer, inner))


def _first(ctx: SessionContext, t: Turn) -> int:
    return ctx.utterances[t.members[0]].turn_index


def _last(ctx: SessionContext, t: Turn) -> int:
    return ctx.utterances[t.members[-1]].turn_index


def _hit_runs(ctx: SessionContext, outcome: Outcome) -> set[int]:
    """Positions (``Turn.pos``) of the speaker turns holding the outcome's hits."""
    return {ctx.turn_of[h.turn_index].pos for h in outcome.hits} if outcome.matched else set()


def _first_turn(outcome: Outcome) -> Optional[int]:
    return min((h.turn_index for h in outcome.hits), default=None) if outcome.matched else None


def _apply_window(ctx: SessionContext, turns: list[Turn], kind: str, value: float) -> list[Turn]:
    if kind == "first_turns":
        return turns[: int(value)]
    if kind == "last_turns":
        return turns[-int(value):] if value >= 1 else []
    timed = bool(turns) and all(t.start is not None for t in turns)
    if kind in ("first_s", "last_s"):
        if not timed:  # chat without times: fall back to ~1 turn per 5 s
            n = max(1, int(value // 5))
            return turns[:n] if kind == "first_s" else turns[-n:]
        if kind == "first_s":
            return [t for t in turns if t.start <= value]
        end = ctx.duration_s or max(t.end or 0 for t in turns)
        return [t for t in turns if (t.end or 0) >= end - value]
    n_all = len(ctx.turns)
    cut = max(1, int(round(n_all * value / 100)))
    if kind == "first_pct":
        return [t for t in turns if t.pos < cut]
    return [t for t in turns if t.pos >= n_all - cut]


@dataclass(frozen=True)
class Node:
    """A compiled rule.  Subclasses set ``op`` (the YAML key), implement :meth:`parse` and
    :meth:`_evaluate`, and list operand nodes in :meth:`children`."""

    rule_id: str
    scope: Scope = field(default_factory=Scope)
    op: ClassVar[str] = ""
    extra_keys: ClassVar[tuple[str, ...]] = ()   # keys next to the operator key that belong to it

    @classmethod
    def parse(cls, body: Any, c: "Compiler", key: str, rule_id: str, scope: Scope, **extra: Any) -> "Node":
        """Validate the YAML ``body`` (errors name ``key``) and build the node."""
        raise NotImplementedError

    def children(self) -> tuple["Node", ...]:
        """Operand nodes (not the scope's): what rescoping and the embedding walk go through."""
        return ()

    def needs_embeddings(self) -> bool:
        return False

    def rescope(self, scope: Scope) -> "Node":
        """The same rule with a narrower scope (a new node; the original is untouched).  A scope that narrows
        nothing keeps the node itself, so a rule reached twice under the same scope is evaluated once."""
        narrowed = self.scope.narrowed(scope)
        return self if narrowed == self.scope else dataclasses.replace(self, scope=narrowed)

    def evaluate(self, ctx: SessionContext) -> Outcome:
        key = ("node", id(self))
        if key not in ctx._cache:
            ctx._cache[key] = self._evaluate(ctx)
        return ctx._cache[key]

    def _evaluate(self, ctx: SessionContext) -> Outcome:
        raise NotImplementedError


def parse_bounds(c: "Compiler", body: dict, key: str, hi: float, what: str) -> tuple[Optional[float], Optional[float]]:
    """``(below, above)`` of a ``{below: X} | {above: X}`` body: exactly one, a number in [0, hi]."""
    if ("below" in body) == ("above" in body):
        raise c.err(key, f"needs exactly one of below / above ({what})")
    return tuple(c.number(body[k], f"{key}.{k}", 0, hi) if k in body else None for k in ("below", "above"))


def utterance_values(ctx: SessionContext, candidates: list[Turn], values: dict[int, float], below: Optional[float],
                     above: Optional[float], rule_id: str, show: str) -> Outcome:
    """Hits on the candidate turns' utterances whose value (``values``: utterance index -> value; missing:
    unknown) is below ``below`` or at/above ``above``; the evidence reads ``show.format(value) | text``."""
    hits = []
    for t in candidates:
        for i in t.members:
            value = values.get(i)
            if value is not None and ((below is not None and value < below) or (above is not None and value >= above)):
                hits.append(ctx.hit(rule_id, i, f"{show.format(value)} | {ctx.utterances[i].text}"))
    return turn_outcome(ctx, candidates, hits)


def turn_outcome(ctx: SessionContext, candidates: list[Turn], hits: list[Hit]) -> Outcome:
    """Outcome of a per-turn text check: matched when any turn hit; the low-confidence utterances of
    the candidate turns without a hit are where the check may have missed something."""
    hit = {ctx.turn_of[h.turn_index].pos for h in hits}
    missed = [t for t in candidates if t.pos not in hit]
    return Outcome(bool(hits), tuple(hits), ctx.uncertain(missed))
