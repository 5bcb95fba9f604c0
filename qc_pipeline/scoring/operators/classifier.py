"""``classifier``: a turn classifier's probability for each utterance of the candidate turns.

    classifier: {model: solution_turn-v1.json, above: 0.4}   |   {model: ..., below: 0.4}

``model`` is a JSON file made by ``scripts/train_turn_model.py`` (:mod:`qc_pipeline.scoring.turn_model`):
absolute, or relative to the card's folder, the current folder or the folder where the default card and
its models ship inside the package (:func:`model_path`).
It is loaded when the card is compiled, once per process; a missing or broken file is a config error
naming this key.  A hit is an utterance whose probability is at or above ``above`` (below ``below``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from qc_pipeline.scoring.card import PACKAGE, find_file
from qc_pipeline.scoring.operators.base import Node, parse_bounds, utterance_values
from qc_pipeline.scoring.turn_model import TurnModel, TurnModelError, load_turn_model


def model_path(spec: str, card_source: Optional[str]) -> Path:
    """The model file: absolute; else next to the card; else in the current folder; else among the models
    that ship with the default card (so a copy of the default card edited elsewhere still finds them)."""
    places = list(dict.fromkeys(([Path(card_source).parent.resolve()] if card_source else [])
                                + [Path.cwd(), PACKAGE / "configs" / "scorecards"]))
    found = find_file(spec, places)
    if found is None:
        raise TurnModelError(f"turn-classifier model {spec!r} not found (looked in {', '.join(map(str, places))})")
    return found.resolve()


@dataclass(frozen=True)
class Classifier(Node):
    op = "classifier"
    model: Optional[TurnModel] = None
    below: Optional[float] = None
    above: Optional[float] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        body = c.mapping(body, key, ("model", "below", "above"), required=("model",))
        if not isinstance(body["model"], str) or not body["model"].strip():
            raise c.err(f"{key}.model", "expected the path of a turn-classifier JSON file")
        try:
            model = load_turn_model(str(model_path(body["model"], c.source)))
        except TurnModelError as e:
            raise c.err(f"{key}.model", str(e)) from None
        below, above = parse_bounds(c, body, key, 1, "a probability 0..1")
        return cls(rule_id=rule_id, scope=scope, model=model, below=below, above=above)

    def _probabilities(self, ctx, indices: list[int]) -> dict[int, float]:
        """utterance index -> probability, computed once per session and model."""
        probs = ctx._cache.setdefault(("classifier", id(self.model)), {})
        todo = [i for i in indices if i not in probs]
        if todo:
            probs.update(zip(todo, (float(p) for p in self.model.proba([ctx.utterances[i].text for i in todo]))))
        return probs

    def _evaluate(self, ctx):
        cands = self.scope.candidates(ctx)
        probs = self._probabilities(ctx, [i for t in cands for i in t.members])
        return utterance_values(ctx, cands, probs, self.below, self.above, self.rule_id, "p={:.2f}")
