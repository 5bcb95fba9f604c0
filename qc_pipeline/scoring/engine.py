"""Score one session against a scorecard; every point carries its evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

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
    evidence: list[Hit] = []
    level = None
    violations = 0
    if item.mode == "binary":
        out = item.passing.evaluate(ctx)
        hit, points = out.matched, item.weight if out.matched else 0.0
        evidence.extend(out.hits)
    elif item.mode == "graded":
        hit, points = False, 0.0
        for j, lv in enumerate(item.levels):
            out = lv.when.evaluate(ctx)
            if out.matched:
                hit, points, level = True, lv.points, j
                evidence.extend(out.hits)
                break
    else:
        out = item.violation.evaluate(ctx)
        turns = sorted({h.turn_index for h in out.hits}) if out.matched else []
        # a violation of absence (e.g. a mandatory statement never said) has no turn: it counts once
        violations = len(turns) if turns or not out.matched else 1
        hit = violations > 0
        points = max(item.floor, item.weight - violations * item.per_violation)
        evidence.extend(out.hits)
    vetoed = False
    if item.veto is not None:
        v = item.veto.evaluate(ctx)
        if v.matched:
            vetoed = True
            points = 0.0
            evidence.extend(v.hits)
    return ItemResult(**base, points=round(points, 3), applicable=True, hit=hit, level=level, violations=violations,
                      vetoed=vetoed, evidence=tuple(dict.fromkeys(evidence)))


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
        if item.flag and r.applicable and (r.points < r.max_points or r.vetoed) and item.flag not in flags:
            flags.append(item.flag)
    if veto_items:
        flags.append("veto")
    passed = total >= card.pass_score
    if not passed:
        flags.append("low_score")
    return SessionScore(scorecard_id=card.id, scorecard_version=card.version, total=round(total, 2),
                        grade=card.grade(total), passed=passed, veto=bool(veto_items), veto_items=veto_items,
                        flags=tuple(flags), items=results)
