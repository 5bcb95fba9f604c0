"""``unanswered``: trigger turns with no response in the next N turns of the other speaker.

    unanswered: {trigger: NODE, response: NODE, within: 2}     e.g. a complaint not soothed
    unanswered: {trigger: NODE, response: NODE, within: 1, until: NODE}
                 the response is due by the other speaker's first turn that ``until`` matches (that
                 turn included: soothe before or while moving to the solution); where none of
                 the later turns matches, within the next ``within`` turns

The evidence is the other speaker's first turn after the trigger — where the response was due —
quoting the trigger.  A trigger nobody spoke after (the last words of the session) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, Outcome, _hit_runs


@dataclass(frozen=True)
class Unanswered(Node):
    op = "unanswered"
    trigger: Optional[Node] = None
    response: Optional[Node] = None
    within: int = 2
    until: Optional[Node] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("trigger", "response", "within", "until"), required=("trigger", "response"))
        until = c.compile(body["until"], f"{key}.until", rule_id) if "until" in body else None
        return cls(rule_id=rule_id, scope=scope, trigger=c.compile(body["trigger"], f"{key}.trigger", rule_id),
                   response=c.compile(body["response"], f"{key}.response", rule_id),
                   within=int(c.number(body.get("within", 2), f"{key}.within", 1, 50)), until=until)

    def children(self):
        return (self.trigger, self.response) + ((self.until,) if self.until is not None else ())

    def rescope(self, scope):
        return replace(self, trigger=self.trigger.rescope(scope))

    def _evaluate(self, ctx):
        trig = self.trigger.evaluate(ctx)
        resp = self.response.evaluate(ctx)
        due = self.until.evaluate(ctx) if self.until is not None else Outcome(False)
        answered = _hit_runs(ctx, resp)
        stops = _hit_runs(ctx, due)
        hits, seen = [], set()
        for h in trig.hits:
            run = ctx.turn_of[h.turn_index]
            if run.pos in seen:
                continue
            seen.add(run.pos)
            later = _due_turns([t for t in ctx.turns[run.pos + 1:] if t.role != run.role], stops, self.within)
            if later and not any(t.pos in answered for t in later):
                hits.append(ctx.hit(self.rule_id, later[0].members[0], f"no reply to: {h.text}"))
        return Outcome(bool(hits), tuple(hits), trig.uncertain + resp.uncertain + due.uncertain)


def _due_turns(replies, stops, within):
    """The other speaker's turns the response is due in: up to the first one ``until`` hits, or, where none
    is, the first ``within``."""
    for k, t in enumerate(replies):
        if t.pos in stops:
            return replies[: k + 1]
    return replies[:within]
