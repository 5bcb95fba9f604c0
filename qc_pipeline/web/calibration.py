"""Calibration: machine vs reviewer and reviewer vs reviewer agreement (Cohen's κ), per item and per reviewer.

Input: each (call, item, reviewer)'s latest confirm/override of the call's current run
(:meth:`ReviewDB.verdicts`).  A verdict's category is the points it gave (confirm = the machine's);
κ compares categories, so a 10-point item judged 10/5/0 has three.  Reviewer pairs are pooled and
counted both ways (Scott's π form of κ), because different pairs review different calls.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from typing import Optional

from qc_pipeline.metrics import cohen_kappa


def kappa(pairs: list[tuple]) -> Optional[float]:
    """Cohen's κ of (rater A, rater B) category pairs, to 4 places; None when undefined (no pairs, or one category)."""
    k = cohen_kappa(pairs)
    return None if k is None else round(k, 4)


def _points(v: dict) -> float:
    return round(v["machine_points"] if v["action"] == "confirm" else (v["new_points"] or 0.0), 2)


def calibrate(verdicts: list[dict], runs: dict[str, str]) -> dict:
    """``runs``: call_id -> current run_id; verdicts of other runs (or of calls no longer there) are left out."""
    vs = [v for v in verdicts if v["call_id"] in runs and (v["run_id"] is None or v["run_id"] == runs[v["call_id"]])]
    by_item: dict[str, list[dict]] = defaultdict(list)
    units: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for v in vs:
        by_item[v["item_id"]].append(v)
        units[(v["call_id"], v["item_id"])].append(v)
    rr_pairs: dict[str, list[tuple]] = defaultdict(list)        # item -> (points A, points B), both ways
    by_reviewer_pairs: dict[str, list[bool]] = defaultdict(list)
    for (_call, item), group in units.items():
        for a, b in combinations(group, 2):
            pa, pb = _points(a), _points(b)
            rr_pairs[item] += [(pa, pb), (pb, pa)]
            by_reviewer_pairs[a["user"]].append(pa == pb)
            by_reviewer_pairs[b["user"]].append(pa == pb)

    def machine_stats(group: list[dict]) -> dict:
        deltas = [abs(_points(v) - round(v["machine_points"] or 0.0, 2)) for v in group]
        return {"n_reviewed": len(group), "agreement": round(sum(1 for d in deltas if d < 1e-9) / len(group), 4),
                "n_override": sum(1 for v in group if v["action"] == "override"),
                "mean_abs_change": round(sum(deltas) / len(group), 3),
                "kappa_machine": kappa([(round(v["machine_points"] or 0.0, 2), _points(v)) for v in group])}

    items = []
    for item_id in sorted(by_item):
        pairs = rr_pairs.get(item_id, [])
        items.append({"item_id": item_id, **machine_stats(by_item[item_id]),
                      "n_double": len(pairs) // 2,
                      "agreement_reviewers": round(sum(1 for a, b in pairs if a == b) / len(pairs), 4) if pairs else None,
                      "kappa_reviewers": kappa(pairs)})
    reviewers = []
    per_user: dict[str, list[dict]] = defaultdict(list)
    for v in vs:
        per_user[v["user"]].append(v)
    for user in sorted(per_user):
        agree = by_reviewer_pairs.get(user, [])
        reviewers.append({"user": user, **machine_stats(per_user[user]), "n_double": len(agree),
                          "agreement_reviewers": round(sum(agree) / len(agree), 4) if agree else None})
    all_pairs = [p for ps in rr_pairs.values() for p in ps]
    return {"items": items, "reviewers": reviewers,
            "overall": {"n_verdicts": len(vs), "n_double": len(all_pairs) // 2,
                        "kappa_reviewers": kappa(all_pairs),
                        "kappa_machine": kappa([(round(v["machine_points"] or 0.0, 2), _points(v)) for v in vs])}}
