"""``reply_to``: turns that answer a turn ``NODE`` found — the turn right before, by the other speaker.

    reply_to: NODE        e.g. the customer's answer to the agent's question: "还是不行" right after
                          "请问重启过了吗" reports the state; after an answer it pushes back

The evidence is the replying turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, Outcome


@dataclass(frozen=True)
class ReplyTo(Node):
    op = "reply_to"
    child: Optional[Node] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        return cls(rule_id=rule_id, scope=scope, child=c.compile(body, key, rule_id))

    def children(self):
        return (self.child,)

    def _evaluate(self, ctx):
        out = self.child.evaluate(ctx)
        asked = {h.turn_index for h in out.hits} if out.matched else set()
        hits = []
        for t in self.scope.candidates(ctx):
            prev = ctx.turns[t.pos - 1] if t.pos > 0 else None
            if prev is not None and prev.role != t.role and any(ctx.utterances[i].turn_index in asked
                                                                for i in prev.members):
                hits.append(ctx.turn_hit(self.rule_id, t))
        return Outcome(bool(hits), tuple(hits))
