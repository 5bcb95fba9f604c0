"""``regex``: a regular expression on a turn's text.

    regex: {pattern: "...", exclude: "..."}      exclude is tested on the same turn
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, turn_outcome


@dataclass(frozen=True)
class Regex(Node):
    op = "regex"
    pattern: str = ""
    exclude: Optional[str] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("pattern", "exclude"), required=("pattern",))
        exclude = c.regex(body["exclude"], f"{key}.exclude") if body.get("exclude") is not None else None
        return cls(rule_id=rule_id, scope=scope, pattern=c.regex(body["pattern"], f"{key}.pattern"), exclude=exclude)

    def _evaluate(self, ctx):
        pat, exc = re.compile(self.pattern), re.compile(self.exclude) if self.exclude else None
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            m = pat.search(t.text)
            if m and not (exc and exc.search(t.text)):
                member = t.member_at(m.start(), normalized=False)
                hits.append(ctx.hit(self.rule_id, member, m.group() + " | " + ctx.utterances[member].text))
        return turn_outcome(ctx, cands, hits)
