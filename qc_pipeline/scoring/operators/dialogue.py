"""Speech acts of a turn's clauses (see :mod:`qc_pipeline.scoring.clauses`).

    question:  {kinds: [confirm_tag, permission, alternative, wh, yes_no],   default: all kinds
                pattern: REGEX | [REGEX, ...],    the clause must match (e.g. a need frame 您是想…)
                exclude: REGEX | [REGEX, ...],    … and must not (offers to act, idle checks)
                min_chars: N, ignore: REGEX | [...]}   … and keep N content characters once the
                                                  ``ignore`` phrases are removed (是这个订单吗 has none)
    statement: {min_chars: 4,                     a clause that is not a question and keeps at least
                ignore: REGEX | [REGEX, ...],     min_chars content characters once the ``ignore``
                exclude: REGEX | [REGEX, ...]}    phrases (boilerplate), particles and tags are removed

One hit per turn: the first clause that qualifies (evidence: the clause, then the message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.clauses import QUESTION_KINDS, Clause, split_clauses, substance
from qc_pipeline.scoring.context import SessionContext, Turn
from qc_pipeline.scoring.operators.base import Node, turn_outcome


def _clauses(ctx: SessionContext, t: Turn) -> list[Clause]:
    key = ("clauses", t.pos)
    if key not in ctx._cache:
        ctx._cache[key] = split_clauses(t.text)
    return ctx._cache[key]


def _compile(c, body, key, name) -> Optional[str]:
    return c.regex(body[name], f"{key}.{name}") if body.get(name) is not None else None


class _ClauseAct(Node):
    def qualifies(self, clause: Clause) -> bool:
        raise NotImplementedError

    def _evaluate(self, ctx):
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            for cl in _clauses(ctx, t):
                if self.qualifies(cl):
                    member = t.member_at(cl.start, normalized=False)
                    hits.append(ctx.hit(self.rule_id, member, cl.text.strip() + " | " + ctx.utterances[member].text))
                    break
        return turn_outcome(ctx, cands, hits)


@dataclass(frozen=True)
class Question(_ClauseAct):
    op = "question"
    kinds: tuple[str, ...] = QUESTION_KINDS
    pattern: Optional[str] = None
    exclude: Optional[str] = None
    min_chars: int = 0
    ignore: Optional[str] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body or {}, key, ("kinds", "pattern", "exclude", "min_chars", "ignore"))
        kinds = c.strings(body.get("kinds", list(QUESTION_KINDS)), f"{key}.kinds")
        for k in kinds:
            c.choice(k, f"{key}.kinds", QUESTION_KINDS)
        return cls(rule_id=rule_id, scope=scope, kinds=kinds, pattern=_compile(c, body, key, "pattern"),
                   exclude=_compile(c, body, key, "exclude"),
                   min_chars=int(c.number(body.get("min_chars", 0), f"{key}.min_chars", 0, 200)),
                   ignore=_compile(c, body, key, "ignore"))

    def qualifies(self, clause):
        if clause.question_kind not in self.kinds:
            return False
        if self.pattern is not None and re.search(self.pattern, clause.body) is None:
            return False
        if self.exclude is not None and re.search(self.exclude, clause.body) is not None:
            return False
        return not self.min_chars or substance(clause.body, re.compile(self.ignore) if self.ignore else None) >= \
            self.min_chars


@dataclass(frozen=True)
class Statement(_ClauseAct):
    op = "statement"
    min_chars: int = 4
    ignore: Optional[str] = None
    exclude: Optional[str] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body or {}, key, ("min_chars", "ignore", "exclude"))
        return cls(rule_id=rule_id, scope=scope, min_chars=int(c.number(body.get("min_chars", 4), f"{key}.min_chars",
                                                                          1, 200)),
                   ignore=_compile(c, body, key, "ignore"), exclude=_compile(c, body, key, "exclude"))

    def qualifies(self, clause):
        if clause.question_kind is not None:
            return False
        if self.exclude is not None and re.search(self.exclude, clause.body):
            return False
        return substance(clause.body, re.compile(self.ignore) if self.ignore else None) >= self.min_chars
