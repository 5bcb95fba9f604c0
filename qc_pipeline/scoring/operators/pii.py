"""``pii``: personal numbers read out (phone, ID card, bank card; also as spoken Chinese digits).

    pii: {kinds: [phone, id_card, bank_card],
          placeholders: {phone: REGEX, ...}}   anonymised exports: a tag that replaced such a number
                                               (e.g. "[电话x]") counts as that number written out
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qc_pipeline.scoring.operators.base import Node, turn_outcome
from qc_pipeline.scoring.pii import find_pii

KINDS = ("phone", "id_card", "bank_card")


@dataclass(frozen=True)
class Pii(Node):
    op = "pii"
    kinds: tuple[str, ...] = KINDS
    placeholders: tuple[tuple[str, str], ...] = ()   # (kind, regex)

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body or {}, key, ("kinds", "placeholders"))
        kinds = c.strings(body.get("kinds", list(KINDS)), f"{key}.kinds")
        bad = [x for x in kinds if x not in KINDS]
        if bad:
            raise c.err(f"{key}.kinds", f"unknown kind {bad[0]!r} ({', '.join(KINDS)})")
        tags = c.mapping(body.get("placeholders") or {}, f"{key}.placeholders", kinds)
        return cls(rule_id=rule_id, scope=scope, kinds=kinds,
                   placeholders=tuple((k, c.regex(v, f"{key}.placeholders.{k}")) for k, v in tags.items()))

    def _evaluate(self, ctx):
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            for i in t.members:
                text = ctx.utterances[i].text
                found = [h.kind for h in find_pii(text) if h.kind in self.kinds]
                found += [f"{kind} (anonymised)" for kind, tag in self.placeholders if re.search(tag, text)]
                if found:
                    hits.append(ctx.hit(self.rule_id, i, ",".join(found) + " | " + text))
        return turn_outcome(ctx, cands, hits)
