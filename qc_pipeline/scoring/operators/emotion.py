"""``emotion``: utterance emotion index (0 upset .. 100 calm/positive) from the sentiment model.

    emotion: {below: 40} | {above: 60}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, turn_outcome


@dataclass(frozen=True)
class Emotion(Node):
    op = "emotion"
    below: Optional[float] = None
    above: Optional[float] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("below", "above"))
        if ("below" in body) == ("above" in body):
            raise c.err(key, "needs exactly one of below / above (emotion index 0..100)")
        return cls(rule_id=rule_id, scope=scope,
                   below=c.number(body["below"], f"{key}.below", 0, 100) if "below" in body else None,
                   above=c.number(body["above"], f"{key}.above", 0, 100) if "above" in body else None)

    def _evaluate(self, ctx):
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            for i in t.members:
                value = ctx.emotion.get(ctx.utterances[i].turn_index)
                if value is None:
                    continue
                if (self.below is not None and value < self.below) or (self.above is not None and value >= self.above):
                    hits.append(ctx.hit(self.rule_id, i, f"emotion={value:.0f} | {ctx.utterances[i].text}"))
        return turn_outcome(ctx, cands, hits)
