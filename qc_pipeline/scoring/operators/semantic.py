"""``semantic``: sentence-embedding similarity to example phrases (multilingual-e5, ``semantic`` extra).

    semantic: {examples: [...], threshold: 0.9}
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from qc_pipeline.scoring.operators.base import Node, Outcome, turn_outcome


@functools.lru_cache(maxsize=256)
def _example_vectors(embed, examples: tuple[str, ...]) -> np.ndarray:
    """The examples' embeddings, once per embedder: they belong to the card, not to a session."""
    return np.asarray(embed(list(examples)))


@dataclass(frozen=True)
class Semantic(Node):
    op = "semantic"
    examples: tuple[str, ...] = ()
    threshold: float = 0.9

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("examples", "threshold"), required=("examples",))
        return cls(rule_id=rule_id, scope=scope, examples=c.strings(body["examples"], f"{key}.examples"),
                   threshold=c.number(body.get("threshold", 0.9), f"{key}.threshold", 0, 1))

    def needs_embeddings(self) -> bool:
        return True

    def _evaluate(self, ctx):
        if ctx.embed is None:
            return Outcome(False)
        ex = _example_vectors(ctx.embed, self.examples)
        cands = self.scope.candidates(ctx)
        hits = []
        for t in cands:
            sim = float(np.max(ex @ ctx.embedding(t.pos)))
            if sim >= self.threshold:
                hits.append(ctx.turn_hit(self.rule_id, t, f"sim={sim:.2f} | {t.text}"))
        return turn_outcome(ctx, cands, hits)
