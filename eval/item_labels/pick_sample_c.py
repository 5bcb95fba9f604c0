"""Samples C and D: dev sessions no earlier annotator labelled. Only dialogue_id, roles and turn texts are printed.

C (labels_v2_c*.jsonl, 100 sessions, parts C1-C3): labelled after every A label had been read while tuning,
so that the card is measured on labels nobody tunes on (held out: aggregate numbers only).
D (labels_v2_d*.jsonl, 60 STC-3 sessions, parts D1-D2): a tuning set whose errors may be read.
E (labels_v2_e*.jsonl): a second, independent labelling pass over sample C (part E1 = the sessions of C1,
E2 = C2, E3 = C3), for inter-annotator agreement on the held-out set.
F (labels_v2_f*.jsonl, the other 99 STC-3 dev dialogues, parts F1-F3 of 33): more tuning labels.

    python eval/item_labels/pick_sample_c.py                 # list the sample with its annotator part
    python eval/item_labels/pick_sample_c.py --part C1       # list one annotator's part (C1-C3, D1-D2, E1-E3, F1-F3)
    python eval/item_labels/pick_sample_c.py --show N        # print the N-th session of the sample (0-based)
    python eval/item_labels/pick_sample_c.py --id DIALOGUE_ID # print any labelled dev session by its dialogue_id
                                                             # (same view and turn numbering as --show)
"""
from __future__ import annotations

import argparse
import random

from pick_sample_b import STC3_MAIN, _read, show
from validate_labels import SOURCE_FILES

# STC-3 dev has 294 dialogues; the 60 of the main sample are labelled, 75 of the other 234 are drawn.
STC3_REST = sorted(set(range(294)) - set(STC3_MAIN))
STC3_C = sorted(random.Random(21).sample(STC3_REST, 75))
STC3_D = sorted(random.Random(33).sample(sorted(set(STC3_REST) - set(STC3_C)), 60))
STC3_F = sorted(set(STC3_REST) - set(STC3_C) - set(STC3_D))


def find(dialogue_id: str) -> tuple[str, int, dict]:
    """(source, file index, record) of a dev session by its dialogue_id (any labelled source)."""
    source = dialogue_id.split("_", 1)[0]
    for i, rec in enumerate(_read(SOURCE_FILES[source]) if source in SOURCE_FILES else ()):
        if rec["dialogue_id"] == dialogue_id:
            return source, i, rec
    raise SystemExit(f"dialogue_id {dialogue_id!r} not found in the dev files")


def sample() -> list[tuple[str, str, int, dict]]:
    """(part, source, file index, record): sample C is JDDC and CSDS dev past the main sample (all that is
    left of them), then 75 STC-3; parts C1 (35), C2 (35), C3 (30) went to three annotators. Sample D (N 100-159)
    is 60 more STC-3 dialogues, parts D1 and D2 (30 each); sample F (N 160-258) the other 99, parts F1-F3."""
    picks = [
        ("jddc", "jddc_sample/dev.jsonl", list(range(80, 87))),
        ("csds", "csds_jd/dev.jsonl", list(range(60, 78))),
        ("stc3", "stc3_helpdesk/dev.jsonl", STC3_C + STC3_D + STC3_F),
    ]
    out = []
    for source, rel, idx in picks:
        rows = _read(rel)
        out.extend((source, i, rows[i]) for i in idx)
    parts = ["C1"] * 35 + ["C2"] * 35 + ["C3"] * 30 + ["D1"] * 30 + ["D2"] * 30 + ["F1"] * 33 + ["F2"] * 33 + ["F3"] * 33
    return [(part, *s) for part, s in zip(parts, out)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", type=int, action="append")
    ap.add_argument("--id", action="append", dest="ids", metavar="DIALOGUE_ID")
    ap.add_argument("--part", choices=("C1", "C2", "C3", "D1", "D2", "E1", "E2", "E3", "F1", "F2", "F3"))
    args = ap.parse_args()
    if args.ids:
        for did in args.ids:
            print(show(*find(did)))
            print()
        raise SystemExit(0)
    s = sample()
    if args.show is None:
        for n, (part, src, i, rec) in enumerate(s):
            if args.part in (None, part, part.replace("C", "E")):
                print(n, part, src, i, rec["dialogue_id"], len(rec["turns"]))
    else:
        for n in args.show:
            print(show(*s[n][1:]))
            print()
