"""Score one session against a scorecard; every point carries its evidence.

A transcript can be wrong.  On audio, an utterance the ASR stage marked ``low_confidence`` may have
lost the very phrase a rule looks for, or contain words that were never said.  So:

* an item that lost points while its rules looked at low-confidence utterances is marked
  ``uncertain`` with those utterances named (``uncertain_turns``);
* a veto found only on low-confidence utterances is not applied (a veto must be near-certain);
  the item is marked uncertain instead;
* the session gets the flag ``low_asr_confidence``, which puts it in the review queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qc_pipeline.records import FLAG_LOW_ASR_CONFIDENCE, item_lost
from qc_pipeline.scoring.card import Item, Scorecard
from qc_pipeline.scoring.context import Hit, SessionContext


@dataclass(frozen=True)
class ItemResult:
    item_id: str
    name: str
    role: str
    mode: str
    max_points: float
    points: float
    applicable: bool
    hit: bool                 # passed (binary/graded: any level) or violated (deduction)
    level: Optional[int]      # graded: index of the matching level
    violations: int
    vetoed: bool
    evidence: tuple[Hit, ...]
    uncertain: bool = False               # decided on low-confidence ASR text (see module doc)
    uncertain_turns: tuple[int, ...] = ()


@dataclass(frozen=True)
class SessionScore:
    scorecard_id: str
    scorecard_version: str
    total: float
    grade: str
    passed: bool
    veto: bool
    veto_items: tuple[str, ...]
    flags: tuple[str, ...]
    items: tuple[ItemResult, ...]


def score_item(item: Item, ctx: SessionContext) -> ItemResult:
    base = dict(item_id=item.id, name=item.name, role=item.role, mode=item.mode, max_points=item.weight)
    if item.not_applicable is not None:
        na = item.not_applicable.evaluate(ctx)
        if na.matched:
            return ItemResult(**base, points=0.0, applicable=False, hit=False, level=None, violations=0,
                              vetoed=False, evidence=na.hits)
    low = ctx.low_confidence
    evidence: list[Hit] = []
    unsure: list[int] = []      # low-confidence utterances the verdict rests on
    level = None
    violations = 0
    if item.mode == "binary":
        out = item.passing.evaluate(ctx)
        hit, points = out.matched, item.weight if out.matched else 0.0
        evidence.extend(out.hits)
        unsure.extend(out.uncertain if not hit else ())
    elif item.mode == "graded":
        hit, points = False, 0.0
        for j, lv in enumerate(item.levels):
            out = lv.when.evaluate(ctx)
            if out.matched:
                hit, points, level = True, lv.points, j
                evidence.extend(out.hits)
                break
            unsure.extend(out.uncertain)   # a better level missed, maybe on uncertain text
    else:
        out = item.violation.evaluate(ctx)
        turns = sorted({h.turn_index for h in out.hits}) if out.matched else []
        # a violation of absence (e.g. a mandatory statement never said) has no turn: it counts once
        violations = len(turns) if turns or not out.matched else 1
        hit = violations > 0
        points = max(item.floor, item.weight - violations * item.per_violation)
        evidence.extend(out.hits)
        unsure.extend(t for t in turns if t in low)
        if out.matched and not turns:
            unsure.extend(out.uncertain)
    vetoed = False
    if item.veto is not None:
        v = item.veto.evaluate(ctx)
        if v.matched:
            sure = [h for h in v.hits if h.turn_index not in low]
            if sure or not v.hits:
                vetoed, points = True, 0.0
                evidence.extend(sure or v.hits)
            else:
                unsure.extend(h.turn_index for h in v.hits)
                evidence.extend(v.hits)
    unsure_turns = tuple(sorted(set(unsure)))
    return ItemResult(**base, points=round(points, 3), applicable=True, hit=hit, level=level, violations=violations,
                      vetoed=vetoed, evidence=tuple(dict.fromkeys(evidence)), uncertain=bool(unsure_turns),
                      uncertain_turns=unsure_turns)


def score_session(card: Scorecard, ctx: SessionContext) -> SessionScore:
    results = tuple(score_item(item, ctx) for item in card.items)
    applicable = [r for r in results if r.applicable]
    max_total = sum(r.max_points for r in applicable)
    total = 100.0 * sum(r.points for r in applicable) / max_total if max_total > 0 else 100.0
    veto_items = tuple(r.item_id for r in results if r.vetoed)
    if veto_items:
        total = 0.0
    flags = []
    for item, r in zip(card.items, results):
        if item.flag and item_lost(r.applicable, r.points, r.max_points, r.vetoed) and item.flag not in flags:
            flags.append(item.flag)
    if veto_items:
        flags.append("veto")
    passed = total >= card.pass_score
    if not passed:
        flags.append("low_score")
    if any(r.uncertain for r in results):
        flags.append(FLAG_LOW_ASR_CONFIDENCE)
    return SessionScore(scorecard_id=card.id, scorecard_version=card.version, total=round(total, 2),
                        grade=card.grade(total), passed=passed, veto=bool(veto_items), veto_items=veto_items,
                        flags=tuple(flags), items=results)
