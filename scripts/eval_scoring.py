"""Scorecard evaluation on real dev dialogues, in one table.

    python scripts/eval_scoring.py [--shared ../shared/data] [--labels eval/item_labels/labels_v2.jsonl]
                                   [--labels-b eval/item_labels/labels_v2_b.jsonl] [--scorecard PATH]
                                   [--labels-c FILE ...] [--labels-e FILE ...] [--errors ITEM] [--json]

Rows (against hand labels, guide: eval/item_labels/GUIDE.md):
  greeting / closing / need confirmation F1 (+ Cohen's κ), solution given F1, solution acceptance κ
  (solution item at full points vs customer_reaction == accepted), attitude and compliance violation
  precision / recall (per session: any violation; and per turn, a machine turn counting when it is
  in the same speaker run as a labelled turn), session total MAE vs the label-derived total
  (:func:`label_total`), pass/fail agreement (also per source: chat, calls, Weibo), and the same fields
  between annotators A and B, and C and E (inter-annotator κ: the ceiling). A and B are tuning labels;
  C (held out, labels_v2_c*.jsonl) and its second labelling E (labels_v2_e*.jsonl) are measured only.
Also: every veto on all dev corpora (JDDC, CSDS, MobileCS, STC-3) with its text; STC-3 dev
Spearman ρ (average ranks for ties) of every item and the total with the 19-annotator means of S
and A; text-scoring throughput with and without the sentiment model, measured in this run.
Per label set, the error budget: total MAE and pass/fail agreement had one item (or only the solution's
reaction level) been scored as the labels score it — which item a better judge should take on first.

Totals carry a 95 % bootstrap interval; ``--baseline CARD`` scores every session with a second card too
and prints, per label set, the paired change in MAE and pass/fail agreement with its interval.

``--errors ITEM`` lists the sessions where machine and labels disagree on ITEM (greeting, closing,
need_confirmation, solution_given, accepted, attitude, compliance) — for error analysis, on the
tuning labels only (pass the D/F tuning samples with ``--labels``); the held-out sets are never listed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from qc_pipeline.config import ScoringConfig  # noqa: E402
from qc_pipeline.inputs import chat_to_source  # noqa: E402
from qc_pipeline.metrics import cohen_kappa  # noqa: E402
from qc_pipeline.metrics import precision_recall_f1 as prf  # noqa: E402  (short name for the table code)
from qc_pipeline.pipeline import Pipeline  # noqa: E402
from qc_pipeline.stages.chat import ChatStage, chat_text  # noqa: E402
from qc_pipeline.stages.score import ScoreStage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "eval" / "item_labels"
CORPORA = ("jddc_sample/dev.jsonl", "csds_jd/dev.jsonl", "mobilecs_sample/dev.jsonl", "stc3_helpdesk/dev.jsonl")

TUNING_DISCLOSURE = """\
Tuning disclosure (issue 12). The default card was developed against: labels_v1.jsonl (60 JDDC+CSDS
sessions, every error looked at), the error classes named in the issue, and reading unlabelled dev
dialogues of all four corpora. labels_v2.jsonl (annotator A) and labels_v2_b.jsonl (B) were made without
seeing machine output; every v2 A error has since been read while tuning (first the 'tune' half, then
the 'check' half, whose untouched numbers were need confirmation F1 0.57, attitude P/R 0.50/0.26, MAE
6.09, pass/fail 80.6%). B (a subset of A) was only read as aggregate numbers. Samples D and F (159 more
STC-3 dialogues, labels_v2_d*/f*) are tuning labels too: their errors were read. Sample C (100 sessions,
labels_v2_c*) is held out: it was never read per session by anyone who saw machine output, only these
aggregate tables were printed, seventeen times (card 2026.12-1: MAE 6.34, pass/fail 76.0%; after the first
2026.12-2 change: 6.02, 76.0%; twice with the D-tuned card: 6.41, 77.0%; with the D+F-tuned card, three
times: 5.84, 77.0%; behaviour-preserving refactors were checked against the whole table, which re-printed
those same figures; card 2026.12-3, twice: 6.08, 78.0%, the second time with --baseline 2026.12-2: MAE
change +0.24 [-0.23, +0.89], pass/fail +1.0% [-2%, +5%]; re-printed unchanged twice on 2026-11-26, after
GPU-only changes that leave scoring alone; card 2026.12-4 on 2026-11-26 with --baseline 2026.12-3: first
6.13, 76.0% (change +0.05 [-0.25, +0.35], -2.0% [-5%, +0%]; closing F1 on C 0.95 -> 0.89), which made us
revert that card's closing request-tail change, so that one decision used C; then, reverted, 6.08, 78.0%,
change exactly 0, printed twice, and once more after dropping the 不是 negation cue: unchanged; card
2026.12-5 on 2026-11-26 with --baseline 2026.12-4: first 6.31, 77.0% (change +0.24 [+0.00, +0.67], -1.0%),
where machine output showed one C closing going 5 -> 0, a side effect of the new holding-line words that the
guide rules out; fixing it (request tails are only what awaits the customer) used C; then 6.23, 78.0% (change
+0.15 [-0.15, +0.60], +0.0%)). While card 2026.12-4 was made, each rule change was checked by counting how
many dev sessions outside A+D+F changed, never by reading them; those 100 sessions are exactly C's, so every
kept change (0 changed) was gated on C too. Card 2026.12-5's rule changes were made on A+D+F alone; C's
sessions were only diffed (machine output, counts) after its first held-out print. Sample E is a second, independent labelling of
C's sessions (the inter-annotator ceiling), also never read per session. The GUIDE.md section 17
adjudicator re-read C and E records and dialogues (no machine output) and changed two E records. The
solution-turn classifier (scripts/train_turn_model.py) is fitted on A, D and F only, so its figures on
A, D and F are in-sample; its 5-fold cross-validated effect on A+D+F is in README. The sentiment model had been
trained on 60 weak-neutral customer questions of C's 25 chat dialogues (models/sentiment/README.md); two E annotators had seen
commit subjects that describe card rules before labelling. STC-3 dev S ratings were looked at (per level
of the solution item) while tuning the reaction rules, so the STC-3 ρ is a dev number too."""

# label sets that are measured, never read per session (``--errors`` does not list them)
HELD_OUT_GLOBS = {"C": "labels_v2_c*.jsonl", "E": "labels_v2_e*.jsonl"}   # measured only, never tuned on

# Label-derived session total (GUIDE.md v2, "Label-derived total"); item weights of the default card.
WEIGHTS = {"greeting": 10, "need_confirmation": 20, "solution": 30, "closing": 10, "attitude": 15, "compliance": 15}
REACTION_POINTS = {"accepted": 30, "no_reaction": 20, "gave_up": 10, "rejected": 10}
PER_VIOLATION = 5


def label_points(lab: dict) -> dict[str, float]:
    """The points per item a QA reviewer's labels imply (the default card's weights)."""
    points = {
        "greeting": WEIGHTS["greeting"] * lab["greeting"],
        "need_confirmation": WEIGHTS["need_confirmation"] * lab["need_confirmation"],
        "closing": 10 if lab["closing_ask_more"] and lab["closing_thanks"] else 5 if lab["closing"] else 0,
        "attitude": max(0, WEIGHTS["attitude"] - PER_VIOLATION * len({v["turn"] for v in lab["attitude_violations"]})),
        "compliance": max(0, WEIGHTS["compliance"]
                          - PER_VIOLATION * len({v["turn"] for v in lab["compliance_violations"]})),
    }
    if lab.get("solution_given") is not None:   # null: cut off before any answer, the item is left out
        points["solution"] = REACTION_POINTS.get(lab.get("customer_reaction"), 20) if lab["solution_given"] else 0
    return points


def label_scale(points: dict[str, float]) -> float:
    """Points -> the 0..100 total: renormalised over the applicable items' weights."""
    return 100.0 / sum(WEIGHTS[k] for k in points)


def label_total(lab: dict, points: Optional[dict[str, float]] = None) -> float:
    """The session total a QA reviewer's labels imply, on the default card's scale (0..100)."""
    if lab.get("veto"):
        return 0.0
    points = label_points(lab) if points is None else points
    return sum(points.values()) * label_scale(points)


def per_session(pairs: list[tuple[float, float]], pass_score: float) -> tuple[list[float], list[float]]:
    """Per pair of session totals: |x − y|, and 1.0 where both are on the same side of the pass score."""
    return ([abs(x - y) for x, y in pairs], [float((x >= pass_score) == (y >= pass_score)) for x, y in pairs])


def total_agreement(pairs: list[tuple[float, float]], pass_score: float) -> tuple[float, float]:
    """(mean |x − y|, share of pairs on the same side of the pass score) of session totals."""
    errs, same = per_session(pairs, pass_score)
    return sum(errs) / len(pairs), sum(same) / len(pairs)


def mean_ci(values: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the mean (sessions resampled with replacement, fixed seed)."""
    x = np.asarray(values, dtype=np.float64)
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def in_tune_half(dialogue_id: str) -> bool:
    """The half of the v2 labels whose errors were looked at while tuning (sha1 of the id is even)."""
    return int(hashlib.sha1(dialogue_id.encode("utf-8")).hexdigest(), 16) % 2 == 0


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def utterance_index(dialogue: dict) -> dict[int, int]:
    """Source turn index -> the chat stage's utterance index (it drops empty turns, by the stage's own
    ``chat_text``).  Label turn indices count every source turn."""
    kept = [i for i, t in enumerate(dialogue["turns"]) if chat_text(str(t.get("text", "")))]
    return {old: new for new, old in enumerate(kept)}


def load_dialogues(shared: Path) -> dict[str, dict]:
    """Every dev dialogue of the labelled corpora, by dialogue_id."""
    return {d["dialogue_id"]: d for f in CORPORA for d in load_jsonl(shared / f)}


def kappa(pairs: list[tuple]) -> float:
    k = cohen_kappa(pairs)
    return float("nan") if k is None else k


# ---------------------------------------------------------------- what each side says, per session
def machine_view(rec) -> dict:
    it = {r.item_id: r for r in rec.score.items}
    return {
        "greeting": it["greeting"].points > 0,
        "closing": it["closing"].points > 0,
        "need_confirmation": it["need_confirmation"].points > 0,
        "solution_given": it["solution"].points > 0,
        "accepted": it["solution"].points >= it["solution"].max_points,
        "attitude": it["attitude"].violations > 0 or it["attitude"].vetoed,
        "compliance": it["compliance"].violations > 0 or it["compliance"].vetoed,
        "attitude_turns": {e.turn_index for e in it["attitude"].evidence},
        "compliance_turns": {e.turn_index for e in it["compliance"].evidence},
        "veto": rec.score.veto,
        "total": rec.score.total,
        "points": {k: r.points for k, r in it.items()},
        "applicable": {k for k, r in it.items() if r.applicable},
    }


def total_with_item_from_labels(m: dict, g: dict, item: Optional[str]) -> float:
    """The machine's session total had it scored ``item`` as the labels do (points and whether it applies);
    ``solution reaction`` takes only the reaction level, where both sides credit a solution.  Sessions either
    side vetoes keep the machine's total; ``item`` None rebuilds the machine's own total."""
    if m["veto"] or g.get("veto"):
        return m["total"]
    pts = {k: m["points"][k] for k in m["applicable"]}
    if item == "solution reaction":
        if pts.get("solution", 0) > 0 and g["points"].get("solution", 0) > 0:
            pts["solution"] = g["points"]["solution"]
    else:
        pts.pop(item, None)
        if item in g["points"]:
            pts[item] = g["points"][item]
    return label_total({}, pts)


def label_view(lab: dict) -> dict:
    out = {k: bool(lab[k]) for k in ("greeting", "closing", "need_confirmation") if k in lab}
    if "solution_given" in lab:
        out["solution_given"] = lab["solution_given"] == 1
        out["accepted"] = lab["solution_given"] == 1 and lab.get("customer_reaction") == "accepted"
    elif lab.get("solved") is not None:
        out["solution_given"] = lab["solved"] == 1
    for k in ("attitude", "compliance"):
        if f"{k}_violations" in lab:
            out[k] = bool(lab[f"{k}_violations"])
            out[f"{k}_turns"] = {v["turn"] for v in lab[f"{k}_violations"]}
    if "veto" in lab:
        out["veto"] = bool(lab["veto"])
    if "attitude_violations" in lab and "compliance_violations" in lab:
        out["points"] = label_points(lab)
        out["total"] = label_total(lab, out["points"])
    return out


def turn_prf(pairs, runs_of) -> tuple[float, float]:
    """Per-turn precision/recall; a machine turn matches a labelled one in the same speaker run."""
    tp_p = n_p = tp_r = n_r = 0
    for did, pred, gold in pairs:
        run = runs_of[did]
        pred_runs, gold_runs = {run.get(t) for t in pred}, {run.get(t) for t in gold}
        n_p += len(pred)
        tp_p += sum(run.get(t) in gold_runs for t in pred)
        n_r += len(gold)
        tp_r += sum(run.get(t) in pred_runs for t in gold)
    return (tp_p / n_p if n_p else float("nan")), (tp_r / n_r if n_r else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--labels", default=str(LABELS / "labels_v2.jsonl"))
    ap.add_argument("--labels-b", default=str(LABELS / "labels_v2_b.jsonl"))
    ap.add_argument("--labels-c", nargs="*", default=sorted(str(p) for p in LABELS.glob(HELD_OUT_GLOBS["C"])),
                    help="held-out labels (sample C, three annotators): measured, never tuned on")
    ap.add_argument("--labels-e", nargs="*", default=sorted(str(p) for p in LABELS.glob(HELD_OUT_GLOBS["E"])),
                    help="a second, independent labelling pass over sample C (inter-annotator ceiling)")
    ap.add_argument("--scorecard", default="configs/scorecards/default.yaml")
    ap.add_argument("--baseline", metavar="SCORECARD",
                    help="also score every session with this card and print, per label set, the change in total "
                         "MAE and pass/fail agreement with a paired 95%% bootstrap interval (is a card change real?)")
    ap.add_argument("--half", choices=("tune", "check"),
                    help="only the labelled sessions of one half (see TUNING_DISCLOSURE and in_tune_half)")
    ap.add_argument("--errors", help="list disagreements on this field")
    ap.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = ap.parse_args()
    shared = Path(args.shared)

    dialogues = load_dialogues(shared)
    pipe = Pipeline([ChatStage(), ScoreStage(ScoringConfig(scorecard=args.scorecard, mask_pii=False))])
    pipe.setup()
    pass_score = pipe.stages[1].card.pass_score
    t0 = time.perf_counter()
    recs = {did: pipe.run_one(chat_to_source(d, did)) for did, d in dialogues.items()}
    with_sentiment_s = time.perf_counter() - t0
    base_totals = {}
    if args.baseline:
        base = Pipeline([ChatStage(), ScoreStage(ScoringConfig(scorecard=args.baseline, mask_pii=False))])
        base.setup()
        base_totals = {did: base.run_one(chat_to_source(d, did)).score.total for did, d in dialogues.items()}
    # label turn indices count every turn of the source file; the chat stage drops empty ones
    new_index, runs_of = {}, {}
    for did, d in dialogues.items():
        new_index[did] = utterance_index(d)
        kept = list(new_index[did])
        run, prev = {}, None
        for new, old in enumerate(kept):
            if prev is None or d["turns"][old]["role"] != d["turns"][kept[new - 1]]["role"]:
                prev = new
            run[new] = prev
        runs_of[did] = run

    report: dict = {}
    rows: list[tuple[str, str, str]] = []

    def section(labels: list[dict], who: str) -> None:
        views = []
        for lab in labels:
            did = lab["dialogue_id"]
            m, g = machine_view(recs[did]), label_view(lab)
            for k in ("attitude_turns", "compliance_turns"):
                if k in g:
                    g[k] = {new_index[did].get(t, -1) for t in g[k]}
            views.append((did, m, g))
        n = len(views)
        rows.append((f"— machine vs annotator {who} ({n} sessions: "
                     + ", ".join(f"{s} {sum(v[0].startswith(s) for v in views)}"
                                 for s in ("jddc", "csds", "mobilecs", "stc3")) + ")", "", ""))
        for field, target in (("greeting", "F1 ≥ 0.9"), ("closing", "F1 ≥ 0.9"),
                              ("need_confirmation", "F1 ≥ 0.8"), ("solution_given", "")):
            sel = [(m[field], g[field]) for _, m, g in views if field in g]
            if sel:
                p, r, f = prf([a for a, _ in sel], [b for _, b in sel])
                k = kappa(sel)
                rows.append((f"{field} F1 (κ)", f"{f:.2f} ({k:.2f})  P {p:.2f} R {r:.2f} pos {sum(b for _, b in sel)}",
                             target))
                report[f"{who}.{field}"] = {"f1": round(f, 3), "kappa": round(k, 3), "p": round(p, 3), "r": round(r, 3)}
        sel = [(m["accepted"], g["accepted"]) for _, m, g in views if "accepted" in g]
        if sel:
            k = kappa(sel)
            p, r, f = prf([a for a, _ in sel], [b for _, b in sel])
            rows.append(("solution acceptance κ (full points vs accepted)", f"{k:.2f}  F1 {f:.2f}", "κ ≥ 0.6"))
            report[f"{who}.accepted"] = {"kappa": round(k, 3), "f1": round(f, 3)}
        for field in ("attitude", "compliance"):
            sel = [(did, m, g) for did, m, g in views if field in g]
            if not sel:
                continue
            p, r, f = prf([m[field] for _, m, _ in sel], [g[field] for _, _, g in sel])
            tp, tr = turn_prf([(did, m[f"{field}_turns"], g[f"{field}_turns"]) for did, m, g in sel], runs_of)
            rows.append((f"{field} violation P / R (session; turn)",
                         f"{p:.2f} / {r:.2f}  ({tp:.2f} / {tr:.2f})  pos {sum(g[field] for _, _, g in sel)}",
                         "P ≥ 0.8 at R ≥ 0.6"))
            report[f"{who}.{field}"] = {"p": round(p, 3), "r": round(r, 3), "turn_p": round(tp, 3),
                                        "turn_r": round(tr, 3)}
        scored = [(did, m, g) for did, m, g in views if "total" in g]   # label_view sets total and points together
        sel = [(m["total"], g["total"]) for _, m, g in scored]
        if sel:
            errs, same = per_session(sel, pass_score)
            mae, agree = sum(errs) / len(sel), sum(same) / len(sel)
            rows.append(("session total MAE vs label-derived total (95% bootstrap interval)",
                         "{:.2f}  [{:.2f}, {:.2f}]".format(mae, *mean_ci(errs)), "≤ 4"))
            rows.append((f"pass/fail agreement (≥ {pass_score:g})",
                         "{:.1%}  [{:.0%}, {:.0%}]  label fails {}".format(agree, *mean_ci(same),
                                                                          sum(b < pass_score for _, b in sel)),
                         "≥ 95%"))
            if base_totals:
                base_sel = [(base_totals[did], g["total"]) for did, _, g in scored]
                base_errs, base_same = per_session(base_sel, pass_score)
                d_err = [e - b for e, b in zip(errs, base_errs)]
                d_same = [s - b for s, b in zip(same, base_same)]
                rows.append(("change against --baseline (paired 95% interval): MAE / pass-fail",
                             "{:+.2f} [{:+.2f}, {:+.2f}]  /  {:+.1%} [{:+.0%}, {:+.0%}]".format(
                                 sum(d_err) / len(d_err), *mean_ci(d_err), sum(d_same) / len(d_same),
                                 *mean_ci(d_same)), ""))
            report[f"{who}.total"] = {"mae": round(mae, 2), "pass_fail_agreement": round(agree, 3)}
            rows.append(("pass/fail disagreements: machine passes a label fail / fails a label pass",
                         f"{sum(a >= pass_score > b for a, b in sel)} / {sum(b >= pass_score > a for a, b in sel)}",
                         ""))
            by_source = []
            for name, prefixes in (("chat (jddc, csds)", ("jddc", "csds")), ("calls (mobilecs)", ("mobilecs",)),
                                   ("weibo (stc3)", ("stc3",))):
                part = [(m["total"], g["total"]) for did, m, g in scored if did.startswith(prefixes)]
                if part:
                    part_mae, part_agree = total_agreement(part, pass_score)
                    by_source.append(f"{name} {part_mae:.2f} / {part_agree:.0%} (n {len(part)})")
            rows.append(("total MAE / pass-fail agreement by source", "  ".join(by_source), ""))
            # where the total's error comes from: per item, mean |machine − label| points on the 0..100 scale
            # (a veto's 0 counts as 0 points on every item), and the mean signed difference
            per_item = {}
            for _, m, g in scored:
                scale = label_scale(g["points"])
                for k, lp in g["points"].items():
                    mp = 0.0 if m["veto"] else m["points"].get(k, 0.0)
                    lp = 0.0 if g.get("veto") else lp
                    per_item.setdefault(k, []).append((mp - lp) * scale)
            rows.append(("total error by item: mean |machine − label| (mean signed)",
                         "  ".join(f"{k} {sum(map(abs, d)) / len(d):.2f} ({sum(d) / len(d):+.2f})"
                                   for k, d in per_item.items()), ""))
            # the error budget: what the total would agree on if one item were scored as labelled (the machine
            # total rebuilt from its own items must match, i.e. the card has the default weights)
            if all(abs(total_with_item_from_labels(m, g, None) - m["total"]) < 0.05 for _, m, g in scored):
                budget = []
                for k in [*per_item, "solution reaction"]:
                    mae, agree = total_agreement([(total_with_item_from_labels(m, g, k), g["total"])
                                                  for _, m, g in scored], pass_score)
                    budget.append(f"{k} {mae:.2f} / {agree:.1%}")
                    report.setdefault(f"{who}.if_labelled", {})[k] = {"mae": round(mae, 2),
                                                                      "pass_fail_agreement": round(agree, 3)}
                rows.append(("total MAE / pass-fail if one item were scored as labelled", "  ".join(budget), ""))
        if args.errors and who not in HELD_OUT_GLOBS:
            print(f"\nDisagreements on {args.errors} (machine vs {who}):")
            for did, m, g in views:
                if args.errors in g and m[args.errors] != g[args.errors]:
                    print(f"  {did}: machine {m[args.errors]} label {g[args.errors]}")

    labels_a = load_jsonl(Path(args.labels)) if Path(args.labels).is_file() else []
    labels_b = load_jsonl(Path(args.labels_b)) if Path(args.labels_b).is_file() else []
    labels_c = [lab for p in args.labels_c for lab in load_jsonl(Path(p))]
    labels_e = [lab for p in args.labels_e for lab in load_jsonl(Path(p))]
    if args.half:
        keep = (args.half == "tune")
        labels_a = [lab for lab in labels_a if in_tune_half(lab["dialogue_id"]) == keep]
        labels_b = [lab for lab in labels_b if in_tune_half(lab["dialogue_id"]) == keep]
    if labels_a:
        section(labels_a, "A")
    if labels_b:
        section(labels_b, "B")
    if args.half:   # the held-out sets have no tuning half
        labels_c, labels_e = [], []
    if labels_c:
        section(labels_c, "C")
    if labels_e:
        section(labels_e, "E")
    def agreement(first: list[dict], second: list[dict], a: str, b: str) -> None:
        """Inter-annotator agreement on the sessions both label sets hold: the ceiling for the machine."""
        by_id = {lab["dialogue_id"]: label_view(lab) for lab in first}
        pairs = [(by_id[lab["dialogue_id"]], label_view(lab)) for lab in second if lab["dialogue_id"] in by_id]
        if not pairs:
            return
        rows.append((f"— annotator {a} vs {b}, inter-annotator κ ({len(pairs)} sessions)", "", ""))
        for field in ("greeting", "closing", "need_confirmation", "solution_given", "accepted", "attitude",
                      "compliance", "veto"):
            sel = [(x[field], y[field]) for x, y in pairs if field in x and field in y]
            if sel:
                k = kappa(sel)
                rows.append((f"κ {field}", f"{k:.2f}", ""))
                report[f"{a}{b}.{field}"] = round(k, 3)
        tot = [(x["total"], y["total"]) for x, y in pairs if "total" in x and "total" in y]
        if tot:
            mae, agree = total_agreement(tot, pass_score)
            rows.append((f"label total |{a} − {b}| mean", f"{mae:.2f}", ""))
            rows.append((f"label pass/fail agreement {a} vs {b} (the ceiling for the machine)", f"{agree:.1%}", ""))
            report[f"{a}{b}.total"] = {"mae": round(mae, 2), "pass_fail_agreement": round(agree, 3)}

    agreement(labels_a, labels_b, "A", "B")
    agreement(labels_c, labels_e, "C", "E")

    # ---- vetoes on every dev corpus
    vetoes = [(did, rec) for did, rec in recs.items() if rec.ok and rec.score.veto]
    per_corpus = {f.split("/")[0]: sum(did.startswith(f.split("_")[0]) for did, _ in vetoes) for f in CORPORA}
    rows.append((f"vetoes on all dev corpora ({len(recs)} sessions)",
                 f"{len(vetoes)}  (" + ", ".join(f"{k} {v}" for k, v in per_corpus.items()) + ")",
                 "0 a reviewer would overturn"))
    report["vetoes"] = len(vetoes)

    # ---- STC-3: Spearman with human ratings
    stc = [d for d in dialogues.values() if d["dialogue_id"].startswith("stc3") and recs[d["dialogue_id"]].ok]
    s_mean = [d["labels"]["quality"]["S"]["mean"] for d in stc]
    a_mean = [d["labels"]["quality"]["A"]["mean"] for d in stc]
    # per item over the sessions where it applies (a not-applicable item has no points to rank)
    series = {"total": [(k, recs[d["dialogue_id"]].score.total) for k, d in enumerate(stc)]}
    for item in recs[stc[0]["dialogue_id"]].score.items:
        series[item.item_id] = [(k, r.points) for k, d in enumerate(stc) for r in recs[d["dialogue_id"]].score.items
                                if r.item_id == item.item_id and r.applicable]
    series["customer emotion index"] = [(k, recs[d["dialogue_id"]].customer_emotion_index or 50.0)
                                        for k, d in enumerate(stc)]
    rows.append((f"— STC-3 dev ({len(stc)} dialogues): Spearman ρ (ties: average ranks) with S / A", "", ""))
    report["stc3"] = {}
    for name, pairs in series.items():
        values = [v for _, v in pairs]
        rs = spearmanr(values, [s_mean[k] for k, _ in pairs]).statistic
        ra = spearmanr(values, [a_mean[k] for k, _ in pairs]).statistic
        rows.append((f"ρ({name}, S) / ρ(…, A)  n={len(pairs)}", f"{rs:+.3f} / {ra:+.3f}",
                     "solution vs S ≥ 0.45" if name == "solution" else ""))
        report["stc3"][name] = {"S": round(float(rs), 3), "A": round(float(ra), 3), "n": len(pairs)}

    # ---- throughput (one process, one thread): with sentiment above; rules only here, same sessions
    rules_only = Pipeline([ChatStage(), ScoreStage(ScoringConfig(scorecard=args.scorecard, sentiment=False,
                                                                 mask_pii=False))])
    rules_only.setup()
    t0 = time.perf_counter()
    for did, d in dialogues.items():
        rules_only.run_one(chat_to_source(d, did))
    rules_s = time.perf_counter() - t0
    n = len(dialogues)
    rows.append((f"throughput, 1 core ({n} sessions)", f"rules {n / rules_s:.1f}/s, rules + sentiment "
                 f"{n / with_sentiment_s:.1f}/s ({1000 * with_sentiment_s / n:.1f} ms/session)", ""))
    report["throughput"] = {"rules_per_s": round(n / rules_s, 1),
                            "with_sentiment_per_s": round(n / with_sentiment_s, 1)}

    width = max(len(r[0]) for r in rows) + 2
    print(f"Scorecard {args.scorecard}; labels A {args.labels if labels_a else '(none)'}; "
          f"B {args.labels_b if labels_b else '(none)'}; C {len(labels_c)} and E {len(labels_e)} sessions\n")
    print(f"{'measure':{width}s} {'value':44s} target")
    for name, value, target in rows:
        print(f"{name:{width}s} {value:44s} {target}")
    print("\nEvery veto:")
    for did, rec in vetoes:
        for r in rec.score.items:
            if r.vetoed:
                for e in r.evidence:
                    print(f"  {did} [{r.item_id}] turn {e.turn_index} {e.rule_id}: {e.text[:120]}")
    if not vetoes:
        print("  (none)")
    print("\n" + TUNING_DISCLOSURE)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
