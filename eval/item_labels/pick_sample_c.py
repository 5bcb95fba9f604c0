"""Sample C (labels_v2_c*.jsonl): 100 dev sessions no earlier annotator labelled, for a held-out check.

Labelled after every A label had been read while tuning (GUIDE.md section 16), so that the card is measured
once more on labels nobody tuned on. Only dialogue_id, roles and turn texts are printed.

    python eval/item_labels/pick_sample_c.py                 # list the sample with its annotator part
    python eval/item_labels/pick_sample_c.py --part C1       # list one annotator's part
    python eval/item_labels/pick_sample_c.py --show N        # print the N-th session of the sample (0-based)
"""
from __future__ import annotations

import argparse
import random

from pick_sample_b import STC3_MAIN, _read, show

# STC-3 dev has 294 dialogues; the 60 of the main sample are labelled, 75 of the other 234 are drawn.
STC3_REST = sorted(set(range(294)) - set(STC3_MAIN))
STC3_C = sorted(random.Random(21).sample(STC3_REST, 75))


def sample() -> list[tuple[str, str, int, dict]]:
    """(part, source, file index, record) for the 100 sessions: JDDC and CSDS dev past the main sample
    (all that is left of them), then STC-3; parts C1 (35), C2 (35), C3 (30) go to three annotators."""
    picks = [
        ("jddc", "jddc_sample/dev.jsonl", list(range(80, 87))),
        ("csds", "csds_jd/dev.jsonl", list(range(60, 78))),
        ("stc3", "stc3_helpdesk/dev.jsonl", STC3_C),
    ]
    out = []
    for source, rel, idx in picks:
        rows = _read(rel)
        out.extend((source, i, rows[i]) for i in idx)
    return [("C1" if n < 35 else "C2" if n < 70 else "C3", *s) for n, s in enumerate(out)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", type=int, action="append")
    ap.add_argument("--part", choices=("C1", "C2", "C3"))
    args = ap.parse_args()
    s = sample()
    if args.show is None:
        for n, (part, src, i, rec) in enumerate(s):
            if args.part in (None, part):
                print(n, part, src, i, rec["dialogue_id"], len(rec["turns"]))
    else:
        for n in args.show:
            print(show(*s[n][1:]))
            print()
