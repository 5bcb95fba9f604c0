"""``restates``: a turn that repeats an earlier turn found by ``source`` (need confirmation).

    restates: {source: NODE, min_similarity: 0.3, method: lexical|semantic}

lexical = share of the source's pinyin bigrams repeated (>= 3 shared); semantic = e5 cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.scoring.operators.base import Node, Outcome, turn_outcome
from qc_pipeline.scoring.textmatch import coverage


@dataclass(frozen=True)
class Restates(Node):
    op = "restates"
    source: Optional[Node] = None
    min_similarity: float = 0.5
    method: str = "lexical"

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("source", "min_similarity", "method"), required=("source",))
        return cls(rule_id=rule_id, scope=scope, source=c.compile(body["source"], f"{key}.source", rule_id),
                   min_similarity=c.number(body.get("min_similarity", 0.5), f"{key}.min_similarity", 0, 1),
                   method=c.choice(body.get("method", "lexical"), f"{key}.method", ("lexical", "semantic")))

    def children(self):
        return (self.source,)

    def needs_embeddings(self) -> bool:
        return self.method == "semantic"

    def _evaluate(self, ctx):
        src = self.source.evaluate(ctx)
        if not src.matched:
            return Outcome(False)
        sources = {ctx.turn_of[h.turn_index].pos: ctx.turn_of[h.turn_index] for h in src.hits}
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            best = 0.0
            for s in sources.values():
                if s.pos >= t.pos:
                    continue
                if self.method == "semantic" and ctx.embed is not None:
                    sim = float(ctx.embedding(t.pos) @ ctx.embedding(s.pos))
                else:
                    sim = coverage(s.text, t.text)
                best = max(best, sim)
            if best >= self.min_similarity:
                hits.append(ctx.turn_hit(self.rule_id, t, f"sim={best:.2f} | {t.text}"))
        return turn_outcome(ctx, cands, hits)
