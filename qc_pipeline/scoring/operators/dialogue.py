"""Speech acts of a turn's clauses (see :mod:`qc_pipeline.scoring.clauses`).

    question:  {kinds: [confirm_tag, permission, alternative, wh, yes_no], ...}   default: all kinds
    statement: {...}                                   a clause that is not a question

Both take the clause filters
    pattern: REGEX | [REGEX, ...]     the clause must match (a need frame 您是想…, acceptance words); tested
                                      without leading address terms and fillers (亲爱的, 请问, 那 …)
    exclude: REGEX | [REGEX, ...]     … and must not (offers to act, idle checks)
    exclude_words: REGEX | [REGEX, ...]  … and must not where a match starts and ends on word boundaries
                                      (jieba, the card's lexicon kept whole): "(了|过)(?=…吗$)" finds the
                                      aspect particle of 点错了吗 / 办理过吗, not 过 in 过户吗 or 了 in 了解…吗
    ignore:  REGEX | [REGEX, ...]     phrases that carry no content (boilerplate, identifiers)
    min_chars: N / max_chars: N       content characters left once the ``ignore`` phrases, anonymisation
                                      tags, particles and punctuation are removed ("是这个订单吗" has none;
                                      a short "好的，谢谢" acknowledges, "做工都很好" does not)

One hit per turn: the first clause that qualifies (evidence: the clause, then the message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.clauses import QUESTION_KINDS, Clause, split_clauses, substance
from qc_pipeline.scoring.context import SessionContext, Turn
from qc_pipeline.scoring.operators.base import Node, turn_outcome
from qc_pipeline.scoring.words import word_bounds


def _clauses(ctx: SessionContext, t: Turn) -> list[Clause]:
    key = ("clauses", t.pos)
    if key not in ctx._cache:
        ctx._cache[key] = split_clauses(t.text)
    return ctx._cache[key]


def _compile(c, body, key, name) -> Optional[str]:
    return c.regex(body[name], f"{key}.{name}") if body.get(name) is not None else None


@dataclass(frozen=True)
class _ClauseAct(Node):
    pattern: Optional[str] = None
    exclude: Optional[str] = None
    exclude_words: Optional[str] = None
    lexicon: tuple[str, ...] = ()
    ignore: Optional[str] = None
    min_chars: int = 0
    max_chars: Optional[int] = None
    _FILTERS = ("pattern", "exclude", "exclude_words", "ignore", "min_chars", "max_chars")

    @classmethod
    def _filters(cls, c, body, key) -> dict:
        out = {k: _compile(c, body, key, k) for k in ("pattern", "exclude", "exclude_words", "ignore")}
        out["lexicon"] = c.settings.lexicon
        out["min_chars"] = int(c.number(body.get("min_chars", cls.min_chars), f"{key}.min_chars", 0, 500))
        if body.get("max_chars") is not None:
            out["max_chars"] = int(c.number(body["max_chars"], f"{key}.max_chars", 0, 500))
        return out

    def act(self, clause: Clause) -> bool:
        raise NotImplementedError

    def qualifies(self, clause: Clause) -> bool:
        if not self.act(clause):
            return False
        if self.pattern is not None and re.search(self.pattern, clause.core) is None:
            return False
        if self.exclude is not None and re.search(self.exclude, clause.core) is not None:
            return False
        if self.exclude_words is not None and self._on_words(self.exclude_words, clause.core):
            return False
        if self.min_chars or self.max_chars is not None:
            n = substance(clause.body, re.compile(self.ignore) if self.ignore else None)
            return n >= self.min_chars and (self.max_chars is None or n <= self.max_chars)
        return True

    def _on_words(self, rx: str, text: str) -> bool:
        """Whether ``rx`` matches ``text`` somewhere from a word boundary to a word boundary."""
        bounds = None
        for m in re.finditer(rx, text):
            if bounds is None:   # the lexicon is normalized (lower case): so is the text it is looked up in
                lower = text.lower()
                bounds = word_bounds(lower if len(lower) == len(text) else text, self.lexicon)
            if m.start() in bounds and m.end() in bounds:
                return True
        return False

    def _evaluate(self, ctx):
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            for cl in _clauses(ctx, t):
                if self.qualifies(cl):
                    member = t.member_at(cl.start, normalized=False)
                    quote = cl.body if cl.body and cl.body in t.text else cl.text.strip()
                    hits.append(ctx.hit(self.rule_id, member, quote + " | " + ctx.utterances[member].text))
                    break
        return turn_outcome(ctx, cands, hits)


@dataclass(frozen=True)
class Question(_ClauseAct):
    op = "question"
    kinds: tuple[str, ...] = QUESTION_KINDS

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body or {}, key, ("kinds",) + cls._FILTERS)
        kinds = c.strings(body.get("kinds", list(QUESTION_KINDS)), f"{key}.kinds")
        for k in kinds:
            c.choice(k, f"{key}.kinds", QUESTION_KINDS)
        return cls(rule_id=rule_id, scope=scope, kinds=kinds, **cls._filters(c, body, key))

    def act(self, clause):
        return clause.question_kind in self.kinds


@dataclass(frozen=True)
class Statement(_ClauseAct):
    op = "statement"
    min_chars: int = 4

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body or {}, key, cls._FILTERS)
        return cls(rule_id=rule_id, scope=scope, **cls._filters(c, body, key))

    def act(self, clause):
        return clause.question_kind is None
