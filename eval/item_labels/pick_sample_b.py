"""Annotator B's sample (labels_v2_b.jsonl): pick the 50 sessions and print their turns readably.

Only dialogue_id, roles and turn texts are printed; labels/ratings/summaries/nuggets in the data are
never shown (annotator B labels from the turns alone).

    python eval/item_labels/pick_sample_b.py            # list the sample
    python eval/item_labels/pick_sample_b.py --show N   # print the N-th session of the sample (0-based)
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DATA = Path("/work/shared/data")

# Main-sample STC-3 file indices, GUIDE.md section 12 (random.Random(12).sample(range(294), 60)).
STC3_MAIN = sorted(random.Random(12).sample(range(294), 60))


def _read(rel: str) -> list[dict]:
    with open(DATA / rel, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sample() -> list[tuple[str, int, dict]]:
    """(source, file index, record) for the 50 sessions, in source order then file order."""
    picks = [
        ("jddc", "jddc_sample/dev.jsonl", sorted(random.Random(7).sample(range(80), 15))),
        ("csds", "csds_jd/dev.jsonl", sorted(random.Random(7).sample(range(60), 15))),
        ("mobilecs", "mobilecs_sample/dev.jsonl", [0, 1, 2, 3]),
        ("stc3", "stc3_helpdesk/dev.jsonl", sorted(random.Random(7).sample(STC3_MAIN, 16))),
    ]
    out = []
    for source, rel, idx in picks:
        rows = _read(rel)
        out.extend((source, i, rows[i]) for i in idx)
    return out


def show(source: str, i: int, rec: dict) -> str:
    lines = [f"### {source}[{i}] {rec['dialogue_id']}  ({len(rec['turns'])} turns)"]
    for k, t in enumerate(rec["turns"]):
        who = "AGENT" if t["role"] == "agent" else f"cust{('/' + t['customer_type']) if t.get('customer_type') else ''}"
        lines.append(f"{k:3d} {who:6s} {t['text']}")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--show", type=int, action="append")
    args = ap.parse_args()
    s = sample()
    if args.show is None:
        for n, (src, i, rec) in enumerate(s):
            print(n, src, i, rec["dialogue_id"], len(rec["turns"]))
    else:
        for n in args.show:
            print(show(*s[n]))
            print()
