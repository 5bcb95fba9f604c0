"""Validate hand-label files against the labels_v2 record format (GUIDE.md sections 10-11).

    python eval/item_labels/validate_labels.py eval/item_labels/labels_v2.jsonl [--shared DIR]

Checks per record: field set and types, allowed values, turn indices in range and naming
agent entries of the dialogue (dialogues are read from the shared data dir), sorted unique
``*_turns``, and the consistency rules of the guide. Prints one line per problem and a
summary; exit status 1 if any problem was found. It never looks at labels or ratings in
the data files, only at ``turns``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SOURCE_FILES = {
    "jddc": "jddc_sample/dev.jsonl",
    "csds": "csds_jd/dev.jsonl",
    "mobilecs": "mobilecs_sample/dev.jsonl",
    "stc3": "stc3_helpdesk/dev.jsonl",
}
BINARY = ("greeting", "need_confirmation", "closing", "closing_ask_more", "closing_thanks",
          "taboo", "customer_upset", "veto")
TURN_LISTS = ("greeting_turns", "need_confirmation_turns", "solution_turns", "closing_turns",
              "taboo_turns")
REACTIONS = ("accepted", "no_reaction", "rejected", "gave_up")
ATTITUDE_CLASSES = ("taboo", "profanity", "impatient", "not_soothed")
COMPLIANCE_CLASSES = ("pii_readout", "no_identity_check", "over_promise")
TABOO_CLASSES = ("taboo", "profanity", "impatient")
FIELDS = ("dialogue_id", "source", "annotator", *BINARY, *TURN_LISTS, "solution_given",
          "customer_reaction", "solved", "soothed_first", "attitude_violations",
          "compliance_violations", "note")


def default_shared() -> Path:
    for cand in (REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data"):
        if cand.is_dir():
            return cand
    return REPO.parent / "shared" / "data"


def load_roles(shared: Path) -> dict[str, list[str]]:
    """dialogue_id -> list of turn roles, for every dev file that exists."""
    roles: dict[str, list[str]] = {}
    for rel in SOURCE_FILES.values():
        path = shared / rel
        if not path.is_file():
            continue
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                roles[d["dialogue_id"]] = [t["role"] for t in d["turns"]]
    return roles


def _is01(v) -> bool:
    return type(v) is int and v in (0, 1)


def check_record(rec: dict, roles: dict[str, list[str]]) -> list[str]:
    errs: list[str] = []
    missing = [f for f in FIELDS if f not in rec]
    extra = [f for f in rec if f not in FIELDS]
    if missing:
        errs.append(f"missing fields {missing}")
    if extra:
        errs.append(f"unknown fields {extra}")
    if missing:
        return errs
    did = rec["dialogue_id"]
    if rec["source"] not in SOURCE_FILES:
        errs.append(f"source {rec['source']!r}")
    elif not str(did).startswith(rec["source"] + "_"):
        errs.append(f"dialogue_id does not match source {rec['source']!r}")
    if rec["annotator"] not in ("A", "B", "C1", "C2", "C3", "D1", "D2", "E1", "E2", "E3", "F1", "F2", "F3"):
        errs.append(f"annotator {rec['annotator']!r}")
    for f in BINARY:
        if not _is01(rec[f]):
            errs.append(f"{f} must be 0/1, got {rec[f]!r}")
    for f in ("solution_given", "solved", "soothed_first"):
        if rec[f] is not None and not _is01(rec[f]):
            errs.append(f"{f} must be 0/1/null, got {rec[f]!r}")
    if rec["customer_reaction"] is not None and rec["customer_reaction"] not in REACTIONS:
        errs.append(f"customer_reaction {rec['customer_reaction']!r}")
    if not isinstance(rec["note"], str):
        errs.append("note must be a string")

    turn_roles = roles.get(did)
    if turn_roles is None:
        errs.append("dialogue not found in the shared data")

    def check_turn(t, where: str) -> None:
        if type(t) is not int:
            errs.append(f"{where}: turn {t!r} is not an int")
        elif turn_roles is not None and not 0 <= t < len(turn_roles):
            errs.append(f"{where}: turn {t} out of range 0..{len(turn_roles) - 1}")
        elif turn_roles is not None and turn_roles[t] != "agent":
            errs.append(f"{where}: turn {t} is a {turn_roles[t]} turn, not agent")

    for f in TURN_LISTS:
        v = rec[f]
        if not isinstance(v, list):
            errs.append(f"{f} must be a list")
            continue
        for t in v:
            check_turn(t, f)
        if all(type(t) is int for t in v) and v != sorted(set(v)):
            errs.append(f"{f} must be sorted and unique")
    for f, classes in (("attitude_violations", ATTITUDE_CLASSES),
                       ("compliance_violations", COMPLIANCE_CLASSES)):
        v = rec[f]
        if not isinstance(v, list):
            errs.append(f"{f} must be a list")
            continue
        seen = set()
        for item in v:
            if not isinstance(item, dict) or set(item) != {"turn", "class"}:
                errs.append(f"{f}: entry {item!r} must be {{turn, class}}")
                continue
            if item["class"] not in classes:
                errs.append(f"{f}: class {item['class']!r}")
            check_turn(item["turn"], f)
            key = (item["turn"], item["class"])
            if key in seen:
                errs.append(f"{f}: duplicate entry {key}")
            seen.add(key)
    if errs:
        return errs

    # consistency rules (GUIDE.md)
    for item, turns in (("greeting", "greeting_turns"), ("need_confirmation", "need_confirmation_turns"),
                        ("taboo", "taboo_turns")):
        if bool(rec[item]) != bool(rec[turns]):
            errs.append(f"{item}={rec[item]} but {turns}={rec[turns]}")
    if rec["closing"] != (rec["closing_ask_more"] | rec["closing_thanks"]):
        errs.append("closing must be closing_ask_more OR closing_thanks")
    if bool(rec["closing"]) != bool(rec["closing_turns"]):
        errs.append(f"closing={rec['closing']} but closing_turns={rec['closing_turns']}")
    if (rec["solution_given"] == 1) != bool(rec["solution_turns"]):
        errs.append("solution_turns must be non-empty iff solution_given == 1")
    if (rec["solution_given"] == 1) != (rec["customer_reaction"] is not None):
        errs.append("customer_reaction must be set iff solution_given == 1")
    if rec["customer_upset"] == 1 and rec["soothed_first"] is None:
        errs.append("soothed_first must be 0/1 when customer_upset == 1")
    if rec["customer_upset"] == 0 and rec["soothed_first"] is not None:
        errs.append("soothed_first must be null when customer_upset == 0")
    taboo_turns = sorted({v["turn"] for v in rec["attitude_violations"] if v["class"] in TABOO_CLASSES})
    if rec["taboo_turns"] != taboo_turns:
        errs.append(f"taboo_turns {rec['taboo_turns']} != turns of taboo/impatient/profanity violations {taboo_turns}")
    n_not_soothed = sum(v["class"] == "not_soothed" for v in rec["attitude_violations"])
    want = 1 if (rec["customer_upset"] == 1 and rec["soothed_first"] == 0) else 0
    if n_not_soothed != want:
        errs.append(f"{n_not_soothed} not_soothed entries, expected {want} (upset and not soothed first)")
    return errs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--shared", type=Path, default=default_shared(), help="shared data dir")
    args = ap.parse_args(argv)
    roles = load_roles(args.shared)
    if not roles:
        print(f"no dialogues found under {args.shared}", file=sys.stderr)
        return 2
    n_bad = n_rec = 0
    for path in args.files:
        seen: set[tuple[str, str]] = set()
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                n_rec += 1
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    print(f"{path}:{lineno}: invalid JSON ({exc})")
                    n_bad += 1
                    continue
                errs = [] if isinstance(rec, dict) else ["record is not an object"]
                if not errs:
                    key = (str(rec.get("dialogue_id")), str(rec.get("annotator")))
                    if key in seen:
                        errs.append("duplicate dialogue_id for this annotator")
                    seen.add(key)
                    errs += check_record(rec, roles)
                for e in errs:
                    print(f"{path}:{lineno}: {rec.get('dialogue_id') if isinstance(rec, dict) else '?'}: {e}")
                n_bad += bool(errs)
    print(f"{n_rec} records, {n_bad} with problems")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
