"""The error budget of scripts/eval_scoring.py: a machine total rebuilt with one item as labelled."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_omp = os.environ.get("OMP_NUM_THREADS")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import eval_scoring as E  # noqa: E402

if _omp is None:   # the script pins OpenMP to one thread for its timings; not for the rest of the test session
    os.environ.pop("OMP_NUM_THREADS", None)


def machine(points: dict, applicable: set, veto: bool = False) -> dict:
    return {"points": points, "applicable": applicable, "veto": veto,
            "total": E.label_total({"veto": veto}, {k: points[k] for k in applicable})}


ALL = set(E.WEIGHTS)
LAB = {"dialogue_id": "x", "greeting": 1, "need_confirmation": 0, "closing": 1, "closing_ask_more": 1,
       "closing_thanks": 0, "solution_given": 1, "customer_reaction": "rejected",
       "attitude_violations": [], "compliance_violations": [], "veto": 0}


def test_one_item_as_labelled_and_the_rest_as_the_machine_scored():
    m = machine({"greeting": 10, "need_confirmation": 20, "solution": 30, "closing": 5, "attitude": 10,
                 "compliance": 15}, ALL)
    g = E.label_view(LAB)                     # label: need 0, solution 10, attitude 15
    assert E.total_with_item_from_labels(m, g, None) == pytest.approx(m["total"]) == 90.0
    assert E.total_with_item_from_labels(m, g, "need_confirmation") == pytest.approx(70.0)
    assert E.total_with_item_from_labels(m, g, "solution") == pytest.approx(70.0)
    assert E.total_with_item_from_labels(m, g, "solution reaction") == pytest.approx(70.0)
    assert E.total_with_item_from_labels(m, g, "attitude") == pytest.approx(95.0)


def test_applicability_comes_with_the_item_and_the_total_is_renormalised():
    # the machine left the solution out (cut off); the labels give 0: the solution weight comes back
    m = machine({"greeting": 10, "need_confirmation": 0, "solution": 0, "closing": 5, "attitude": 15,
                 "compliance": 15}, ALL - {"solution"})
    g = E.label_view({**LAB, "solution_given": 0, "customer_reaction": None})
    assert m["total"] == pytest.approx(45 / 70 * 100)
    assert E.total_with_item_from_labels(m, g, "solution") == pytest.approx(45.0)
    # the reaction alone cannot change a solution only one side credits
    assert E.total_with_item_from_labels(m, g, "solution reaction") == pytest.approx(m["total"])
    # and the other way round: labels leave it out, the machine scored it
    m2 = machine({**m["points"], "solution": 20}, ALL)
    g2 = E.label_view({**LAB, "solution_given": None, "customer_reaction": None})
    assert E.total_with_item_from_labels(m2, g2, "solution") == pytest.approx(45 / 70 * 100)


def test_a_vetoed_session_keeps_the_machine_total():
    m = machine({k: 0 for k in ALL}, ALL, veto=True)
    assert E.total_with_item_from_labels(m, E.label_view(LAB), "solution") == 0.0
