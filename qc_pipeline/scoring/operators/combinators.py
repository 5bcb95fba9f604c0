"""Combinators: ``all`` (optionally ``same_turn: true``), ``any``, ``not``, ``first``, ``last``.

    all: [NODE, ...]              every child matches (same_turn: one turn matches every child)
    any: [NODE, ...]
    not: NODE
    first: NODE / last: NODE      only the child's first / last hit (the first upset turn, the
                                  customer's final reaction)

Scope keys on a combinator are pushed down to its children.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, Outcome, _hit_runs


def _uncertain(outs) -> tuple[int, ...]:
    return tuple(dict.fromkeys(t for o in outs for t in o.uncertain))


@dataclass(frozen=True)
class _Many(Node):
    """A combinator over a list of rules."""

    items: tuple[Node, ...] = ()

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        if not isinstance(body, list) or not body:
            raise c.err(key, "expected a non-empty list of rules")
        items = tuple(c.compile(x, f"{key}[{i}]", rule_id) for i, x in enumerate(body))
        node = cls(rule_id=rule_id, items=items, **cls.options(c, key, extra))
        return node if scope == type(scope)() else node.rescope(scope)

    @classmethod
    def options(cls, c, key, extra) -> dict:
        return {}

    def children(self):
        return self.items

    def rescope(self, scope):
        return replace(self, items=tuple(x.rescope(scope) for x in self.items))


@dataclass(frozen=True)
class _One(Node):
    """A combinator over one rule."""

    child: Optional[Node] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        node = cls(rule_id=rule_id, child=c.compile(body, key, rule_id))
        return node if scope == type(scope)() else node.rescope(scope)

    def children(self):
        return (self.child,)

    def rescope(self, scope):
        return replace(self, child=self.child.rescope(scope))


@dataclass(frozen=True)
class AllOf(_Many):
    op = "all"
    extra_keys = ("same_turn",)
    same_turn: bool = False

    @classmethod
    def options(cls, c, key, extra):
        return {"same_turn": c.boolean(extra.get("same_turn", False), key.rsplit(".", 1)[0] + ".same_turn")}

    def _evaluate(self, ctx):
        outs = [x.evaluate(ctx) for x in self.items]
        unc = _uncertain(outs)
        if not all(o.matched for o in outs):
            return Outcome(False, (), unc)
        if not self.same_turn:
            return Outcome(True, tuple(h for o in outs for h in o.hits), unc)
        common = set.intersection(*(_hit_runs(ctx, o) for o in outs))
        hits = tuple(dict.fromkeys(h for o in outs for h in o.hits if ctx.turn_of[h.turn_index].pos in common))
        return Outcome(bool(common), hits, unc)


@dataclass(frozen=True)
class AnyOf(_Many):
    op = "any"

    def _evaluate(self, ctx):
        outs = [x.evaluate(ctx) for x in self.items]
        return Outcome(any(o.matched for o in outs), tuple(h for o in outs if o.matched for h in o.hits),
                       _uncertain(outs))


@dataclass(frozen=True)
class Not(_One):
    op = "not"

    def _evaluate(self, ctx):
        out = self.child.evaluate(ctx)
        return Outcome(not out.matched, (), out.uncertain)


@dataclass(frozen=True)
class Last(_One):
    op = "last"

    def pick(self, turns):
        return max(turns)

    def _evaluate(self, ctx):
        out = self.child.evaluate(ctx)
        if not out.matched or not out.hits:
            return out
        keep = self.pick(h.turn_index for h in out.hits)
        return Outcome(True, tuple(h for h in out.hits if h.turn_index == keep), out.uncertain)


@dataclass(frozen=True)
class First(Last):
    op = "first"

    def pick(self, turns):
        return min(turns)
