"""``pii``: personal numbers read out (phone, ID card, bank card; also as spoken Chinese digits).

    pii: {kinds: [phone, id_card, bank_card]}
"""

from __future__ import annotations

from dataclasses import dataclass

from qc_pipeline.scoring.operators.base import Node, turn_outcome
from qc_pipeline.scoring.pii import find_pii

KINDS = ("phone", "id_card", "bank_card")


@dataclass(frozen=True)
class Pii(Node):
    op = "pii"
    kinds: tuple[str, ...] = KINDS

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body or {}, key, ("kinds",))
        kinds = c.strings(body.get("kinds", list(KINDS)), f"{key}.kinds")
        bad = [x for x in kinds if x not in KINDS]
        if bad:
            raise c.err(f"{key}.kinds", f"unknown kind {bad[0]!r} ({', '.join(KINDS)})")
        return cls(rule_id=rule_id, scope=scope, kinds=kinds)

    def _evaluate(self, ctx):
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            for i in t.members:
                found = [h for h in find_pii(ctx.utterances[i].text) if h.kind in self.kinds]
                if found:
                    hits.append(ctx.hit(self.rule_id, i, ",".join(h.kind for h in found)))
        return turn_outcome(ctx, cands, hits)
