"""``reply_to``: turns that answer a turn ``NODE`` found — the turn right before, by the other speaker.

    reply_to: NODE        e.g. the customer's answer to the agent's question: "还是不行" right after
                          "请问重启过了吗" reports the state; after an answer it pushes back

The evidence is the replying turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, Outcome, _hit_runs


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
        answered = _hit_runs(ctx, out)   # turns are runs: the one before is the other speaker's
        hits = [ctx.turn_hit(self.rule_id, t) for t in self.scope.candidates(ctx) if t.pos - 1 in answered]
        return Outcome(bool(hits), tuple(hits), out.uncertain)
