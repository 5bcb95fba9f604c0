"""``emotion``: utterance emotion index (0 upset .. 100 calm/positive) from the sentiment model.

    emotion: {below: 40} | {above: 60}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, parse_bounds, utterance_values


@dataclass(frozen=True)
class Emotion(Node):
    op = "emotion"
    below: Optional[float] = None
    above: Optional[float] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("below", "above"))
        below, above = parse_bounds(c, body, key, 100, "emotion index 0..100")
        return cls(rule_id=rule_id, scope=scope, below=below, above=above)

    def _evaluate(self, ctx):
        cands = self.scope.candidates(ctx)
        values = {i: ctx.emotion.get(ctx.utterances[i].turn_index) for t in cands for i in t.members}
        return utterance_values(ctx, cands, values, self.below, self.above, self.rule_id, "emotion={:.0f}")
