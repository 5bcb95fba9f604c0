"""``unanswered``: trigger turns with no response in the next N turns of the other speaker.

    unanswered: {trigger: NODE, response: NODE, within: 2}     e.g. a complaint not soothed

The evidence is the other speaker's first turn after the trigger — where the response was due —
quoting the trigger.  A trigger nobody spoke after (the last words of the session) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, Outcome


@dataclass(frozen=True)
class Unanswered(Node):
    op = "unanswered"
    trigger: Optional[Node] = None
    response: Optional[Node] = None
    within: int = 2

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("trigger", "response", "within"), required=("trigger", "response"))
        return cls(rule_id=rule_id, scope=scope, trigger=c.compile(body["trigger"], f"{key}.trigger", rule_id),
                   response=c.compile(body["response"], f"{key}.response", rule_id),
                   within=int(c.number(body.get("within", 2), f"{key}.within", 1, 50)))

    def children(self):
        return (self.trigger, self.response)

    def rescope(self, scope):
        return replace(self, trigger=self.trigger.rescope(scope))

    def _evaluate(self, ctx):
        trig = self.trigger.evaluate(ctx)
        resp = self.response.evaluate(ctx)
        answered = {h.turn_index for h in resp.hits} if resp.matched else set()
        hits, seen = [], set()
        for h in trig.hits:
            run = ctx.turn_of[h.turn_index]
            if run.pos in seen:
                continue
            seen.add(run.pos)
            # the next `within` turns of the other speaker(s)
            later = [t for t in ctx.turns[run.pos + 1:] if t.role != run.role][: self.within]
            if later and not any(ctx.utterances[i].turn_index in answered for t in later for i in t.members):
                hits.append(ctx.hit(self.rule_id, later[0].members[0], f"no reply to: {h.text}"))
        return Outcome(bool(hits), tuple(hits), trig.uncertain + resp.uncertain)
