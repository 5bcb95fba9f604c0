"""Scorecard evaluation on real dialogues.

    python scripts/eval_scoring.py [--shared ../shared/data] [--labels eval/item_labels/labels_v1.jsonl]

1. Item-level precision / recall against the hand labels in eval/item_labels (JDDC + CSDS dev;
   labelling guide next to them).
2. STC-3 helpdesk dev: Spearman correlation of the session total and of the solution item with
   the 19-annotator means of A (task accomplishment) and S (customer satisfaction).
3. Text-scoring throughput (sessions per second on one core), with and without the sentiment
   model, and its share of a call's processing time next to ASR.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from qc_pipeline.config import ScoringConfig  # noqa: E402
from qc_pipeline.inputs import chat_to_source  # noqa: E402
from qc_pipeline.pipeline import Pipeline  # noqa: E402
from qc_pipeline.scoring.context import SessionContext  # noqa: E402
from qc_pipeline.stages.chat import ChatStage  # noqa: E402
from qc_pipeline.stages.score import ScoreStage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def prf(pred: list[bool], gold: list[bool]) -> tuple[float, float, float, int, int]:
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    f = 2 * p * r / (p + r) if tp else 0.0
    return p, r, f, sum(gold), len(gold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--labels", default=str(REPO / "eval" / "item_labels" / "labels_v1.jsonl"))
    ap.add_argument("--scorecard", default=str(REPO / "configs" / "scorecards" / "default.yaml"))
    args = ap.parse_args()
    shared = Path(args.shared)
    cfg = ScoringConfig(scorecard=args.scorecard, mask_pii=False)
    pipe = Pipeline([ChatStage(), ScoreStage(cfg)])
    pipe.setup()
    card = pipe.stages[1].card

    # ---- 1. item precision / recall on hand labels
    dialogues = {d["dialogue_id"]: d for f in ("jddc_sample/dev.jsonl", "csds_jd/dev.jsonl")
                 for d in load_jsonl(shared / f)}
    labels = load_jsonl(Path(args.labels))
    preds: dict[str, list[bool]] = {}
    golds: dict[str, list[bool]] = {}
    sources: dict[str, list[str]] = {}

    def add(name, p, g):
        preds.setdefault(name, []).append(bool(p))
        golds.setdefault(name, []).append(bool(g))
        sources.setdefault(name, []).append(lab["source"])

    for lab in labels:
        rec = pipe.run_one(chat_to_source(dialogues[lab["dialogue_id"]], lab["dialogue_id"]))
        items = {r.item_id: r for r in rec.score.items}
        ctx = SessionContext(rec.utterances)
        rule = lambda rid: card.rule(rid).evaluate(ctx).matched  # noqa: E731
        add("greeting (item points > 0)", items["greeting"].points > 0, lab["greeting"])
        add("need_confirmation (item points > 0)", items["need_confirmation"].points > 0, lab["need_confirmation"])
        add("need_confirmation (full level)", items["need_confirmation"].level == 0, lab["need_confirmation"])
        add("closing (item points > 0)", items["closing"].points > 0, lab["closing"])
        add("closing_ask_more (rule)", rule("closing_ask_more"), lab["closing_ask_more"])
        add("closing_thanks (rule)", rule("closing_thanks"), lab["closing_thanks"])
        add("taboo (rule)", rule("taboo"), lab["taboo"])
        if lab.get("solved") is not None:
            add("solved (solution item >= 20)", items["solution"].points >= 20, lab["solved"])
    print(f"1. Item precision/recall on {len(labels)} hand-labelled dialogues ({args.labels})")
    print(f"{'item':40s} {'P':>6s} {'R':>6s} {'F1':>6s} {'pos':>5s} {'n':>4s}")
    report = {"items": {}}
    for name in preds:
        p, r, f, pos, n = prf(preds[name], golds[name])
        acc = sum(a == b for a, b in zip(preds[name], golds[name])) / n
        report["items"][name] = {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3),
                                 "accuracy": round(acc, 3), "positives": pos, "n": n}
        by_source = []
        for src in sorted(set(sources[name])):
            sel = [i for i, x in enumerate(sources[name]) if x == src]
            ps, rs, _, _, _ = prf([preds[name][i] for i in sel], [golds[name][i] for i in sel])
            by_source.append(f"{src} P {ps:.2f} R {rs:.2f}")
        print(f"{name:40s} {p:6.2f} {r:6.2f} {f:6.2f} {pos:5d} {n:4d}   acc {acc:.2f}   ({'; '.join(by_source)})")

    # ---- 2. STC-3 correlation with human ratings
    stc = load_jsonl(shared / "stc3_helpdesk/dev.jsonl")
    totals, solution, emo, a_mean, s_mean = [], [], [], [], []
    t0 = time.perf_counter()
    for d in stc:
        rec = pipe.run_one(chat_to_source(d, d["dialogue_id"]))
        if not rec.ok:
            continue
        items = {r.item_id: r for r in rec.score.items}
        totals.append(rec.score.total)
        solution.append(items["solution"].points)
        emo.append(rec.customer_emotion_index if rec.customer_emotion_index is not None else 50.0)
        a_mean.append(d["labels"]["quality"]["A"]["mean"])
        s_mean.append(d["labels"]["quality"]["S"]["mean"])
    stc_s = time.perf_counter() - t0
    print(f"\n2. STC-3 dev ({len(totals)} dialogues): Spearman rho with 19-annotator means")
    corr = {
        "total_vs_A": spearman(totals, a_mean), "total_vs_S": spearman(totals, s_mean),
        "solution_vs_A": spearman(solution, a_mean), "solution_vs_S": spearman(solution, s_mean),
        "customer_emotion_vs_S": spearman(emo, s_mean), "customer_emotion_vs_A": spearman(emo, a_mean),
    }
    for k, v in corr.items():
        print(f"  {k:24s} {v:+.3f}")
    report["stc3_spearman"] = {k: round(v, 3) for k, v in corr.items()}

    # ---- 3. throughput (one process, OMP_NUM_THREADS=1)
    n_sessions = len(stc)
    no_sent = Pipeline([ChatStage(), ScoreStage(ScoringConfig(scorecard=args.scorecard, sentiment=False))])
    no_sent.setup()
    t0 = time.perf_counter()
    for d in stc:
        no_sent.run_one(chat_to_source(d, d["dialogue_id"]))
    rules_s = time.perf_counter() - t0
    turns = sum(len(d["turns"]) for d in stc)
    print(f"\n3. Text scoring throughput, 1 core ({n_sessions} STC-3 sessions, {turns} turns)")
    print(f"  rules only        : {n_sessions / rules_s:8.1f} sessions/s  ({1000 * rules_s / n_sessions:.2f} ms/session)")
    print(f"  rules + sentiment : {n_sessions / stc_s:8.1f} sessions/s  ({1000 * stc_s / n_sessions:.2f} ms/session)")
    # ASR costs RTF x duration; a 3-minute call at the measured CPU RTF of ~0.1 is ~18 s of ASR.
    asr_s = 0.1 * 180
    share = (stc_s / n_sessions) / asr_s
    print(f"  share of a 3-min call's processing (ASR ~{asr_s:.0f} s at RTF 0.1): {share:.3%}")
    report["throughput"] = {"rules_sessions_per_s": round(n_sessions / rules_s, 1),
                            "with_sentiment_sessions_per_s": round(n_sessions / stc_s, 1),
                            "share_of_asr_time_3min_call": round(share, 5)}
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
