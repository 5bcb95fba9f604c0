"""Validate annotator B's item labels (labels_v2_b.jsonl) against the labels_v2 contract (GUIDE.md v2, s. 11).

Checks field set and types, turn indices (in range, agent role, inside the greeting/closing windows),
and the consistency rules of the guide. Does not look at, or compute, any score.

    python eval/item_labels/validate_labels_b.py [eval/item_labels/labels_v2_b.jsonl]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_sample_b import sample  # noqa: E402

FIELDS = [
    "dialogue_id", "source", "annotator", "greeting", "greeting_turns", "need_confirmation",
    "need_confirmation_turns", "solution_given", "solution_turns", "customer_reaction", "solved",
    "closing", "closing_ask_more", "closing_thanks", "closing_turns", "taboo", "taboo_turns",
    "customer_upset", "soothed_first", "attitude_violations", "compliance_violations", "veto", "note",
]
SOURCES = {"jddc", "csds", "mobilecs", "stc3"}
REACTIONS = {"accepted", "no_reaction", "rejected", "gave_up"}
ATT = {"taboo", "profanity", "impatient", "not_soothed"}
COMP = {"pii_readout", "no_identity_check", "over_promise"}


def blocks(turns: list[dict]) -> list[list[int]]:
    out: list[list[int]] = []
    prev_agent = False
    for i, t in enumerate(turns):
        if t["role"] == "agent":
            if prev_agent:
                out[-1].append(i)
            else:
                out.append([i])
        prev_agent = t["role"] == "agent"
    return out


def check(rec: dict, turns: list[dict], source: str) -> list[str]:
    err: list[str] = []
    if list(rec) != FIELDS:
        missing = [f for f in FIELDS if f not in rec]
        extra = [f for f in rec if f not in FIELDS]
        return [f"fields: missing {missing} extra {extra} (or order differs)"]
    e = err.append
    if rec["source"] != source or rec["source"] not in SOURCES:
        e(f"source {rec['source']!r} != {source!r}")
    if rec["annotator"] != "B":
        e("annotator must be 'B'")
    n = len(turns)

    def agent_turns(name: str, lst) -> None:
        if not isinstance(lst, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in lst):
            e(f"{name}: not a list of int")
            return
        if lst != sorted(set(lst)):
            e(f"{name}: not sorted/unique")
        for x in lst:
            if not 0 <= x < n:
                e(f"{name}: {x} out of range 0..{n - 1}")
            elif turns[x]["role"] != "agent":
                e(f"{name}: {x} is not an agent turn")

    def binary(name: str, allow_null: bool = False) -> None:
        v = rec[name]
        ok = v in (0, 1) and not isinstance(v, bool) or (allow_null and v is None)
        if not ok:
            e(f"{name}: bad value {v!r}")

    for b in ("greeting", "need_confirmation", "closing", "closing_ask_more", "closing_thanks", "taboo",
              "customer_upset", "veto"):
        binary(b)
    for b in ("solution_given", "solved", "soothed_first"):
        binary(b, allow_null=True)
    for name, flag in (("greeting_turns", "greeting"), ("need_confirmation_turns", "need_confirmation"),
                       ("closing_turns", "closing"), ("taboo_turns", "taboo")):
        agent_turns(name, rec[name])
        if bool(rec[name]) != (rec[flag] == 1):
            e(f"{name} must be non-empty iff {flag}=1")
    agent_turns("solution_turns", rec["solution_turns"])
    if bool(rec["solution_turns"]) != (rec["solution_given"] == 1):
        e("solution_turns must be non-empty iff solution_given=1")

    bl = blocks(turns)
    first2 = {i for b in bl[:2] for i in b}
    last3 = {i for b in bl[-3:] for i in b}
    if not set(rec["greeting_turns"]) <= first2:
        e("greeting_turns outside the first two agent blocks")
    if not set(rec["closing_turns"]) <= last3:
        e("closing_turns outside the last three agent blocks")
    if rec["closing"] != (1 if rec["closing_ask_more"] or rec["closing_thanks"] else 0):
        e("closing != ask_more OR thanks")

    r = rec["customer_reaction"]
    if rec["solution_given"] == 1:
        if r not in REACTIONS:
            e(f"customer_reaction {r!r} invalid for solution_given=1")
    elif r is not None:
        e("customer_reaction must be null when solution_given != 1")

    if rec["customer_upset"] == 1:
        if rec["soothed_first"] not in (0, 1):
            e("soothed_first must be 0/1 when upset")
    elif rec["soothed_first"] is not None:
        e("soothed_first must be null when not upset")

    av = rec["attitude_violations"]
    cv = rec["compliance_violations"]
    for name, lst, classes in (("attitude_violations", av, ATT), ("compliance_violations", cv, COMP)):
        if not isinstance(lst, list):
            e(f"{name}: not a list")
            continue
        seen = set()
        for v in lst:
            if not isinstance(v, dict) or set(v) != {"turn", "class"} or v["class"] not in classes:
                e(f"{name}: bad entry {v!r}")
                continue
            agent_turns(name, [v["turn"]])
            if (v["turn"], v["class"]) in seen:
                e(f"{name}: duplicate {v!r}")
            seen.add((v["turn"], v["class"]))
    if isinstance(av, list):
        tab = sorted({v["turn"] for v in av if isinstance(v, dict) and v.get("class") in ("taboo", "impatient", "profanity")})
        if rec["taboo"] != (1 if tab else 0) or rec["taboo_turns"] != tab:
            e(f"taboo/taboo_turns must follow the taboo/impatient/profanity violations {tab}")
        ns = [v for v in av if isinstance(v, dict) and v.get("class") == "not_soothed"]
        want = rec["customer_upset"] == 1 and rec["soothed_first"] == 0
        if len(ns) != (1 if want else 0):
            e("not_soothed: exactly one entry iff upset and soothed_first=0")
    if not isinstance(rec["note"], str):
        e("note must be a string")
    return err


def main(path: str) -> int:
    by_id = {rec["dialogue_id"]: (src, rec) for src, _, rec in sample()}
    bad = 0
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            did = rec.get("dialogue_id")
            if did not in by_id:
                print(f"line {ln}: {did} not in B's sample")
                bad += 1
                continue
            if did in seen:
                print(f"line {ln}: duplicate {did}")
                bad += 1
            seen.add(did)
            src, data = by_id[did]
            for msg in check(rec, data["turns"], src):
                print(f"line {ln} {did}: {msg}")
                bad += 1
    missing = [d for d in by_id if d not in seen]
    print(f"{len(seen)} records, {len(missing)} of the {len(by_id)} sample sessions not labelled yet, {bad} errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent / "labels_v2_b.jsonl")))
