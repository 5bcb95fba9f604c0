"""Evaluate the sentiment model against the snownlp baseline, in one run.

    python scripts/eval_sentiment.py [--data ../shared/data] [--model models/sentiment/sentiment-v1.joblib]

* Held-out split: the same deterministic rule as training (``qc_pipeline.sentiment.split_of``:
  md5 of the normalized text % 5 == 0 → test), i.e. ≈20 % of each corpus's dev.jsonl, never seen
  in training or model selection.
* Polarity corpora: accuracy and macro-F1 of our polarity head (P(neg) < 0.5 → positive) next to
  snownlp (``SnowNLP(text).sentiments > 0.5`` → positive).
* SMP2020-EWECT: 6-class accuracy / macro-F1 / per-class F1 / anger recall of our emotion head,
  plus a polarity view (happy → pos, angry/sad/fear → neg) where snownlp can be compared.
* Throughput: texts per CPU-second of one process (numpy/BLAS limited to one thread), i.e.
  texts/second/core, for our ``SentimentModel.score`` and for snownlp.
* STC-3 helpdesk dev (294 real Weibo customer/helpdesk threads): distribution of the session
  customer emotion index (customer turns, recency weighted) and its Spearman correlation with the
  19-annotator mean quality ratings (S = customer satisfaction, also A and E); the same for a
  snownlp-based index.  JDDC dev (87 JD chats, no labels): distribution only.
* In-domain neutral questions: the held-out (md5 test split) part of the weak-labelled neutral
  customer turns of JDDC/CSDS/MobileCS (``train_sentiment.is_weak_neutral``; the hand-labelled
  evaluation dialogues excluded), and the turns the same rule admits from the hand-labelled
  dialogues (never trained on, ``train_sentiment.labelled_weak_neutral``): mean utterance emotion
  index and share under the flag threshold, plus a few fixed example service questions.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from qc_pipeline.sentiment import (  # noqa: E402
    EMOTIONS, FLAG_THRESHOLD, SentimentModel, agent_attitude, recency_weights,
    session_emotion,
)


def _train_module():
    spec = importlib.util.spec_from_file_location("train_sentiment", REPO / "scripts" / "train_sentiment.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def snownlp_scores(texts: list[str]) -> list[float]:
    try:
        from snownlp import SnowNLP
    except ImportError:
        raise SystemExit("the baseline needs snownlp: pip install snownlp") from None

    return [SnowNLP(t).sentiments if t.strip() else 0.5 for t in texts]


def acc_f1(y_true, y_pred, labels=None) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return accuracy_score(y_true, y_pred), f1_score(y_true, y_pred, average="macro", labels=labels)


def cpu_rate(fn, texts: list[str], min_seconds: float = 2.0) -> tuple[float, float]:
    """(texts per CPU-second, texts per wall-second), repeating ``fn(texts)`` for ≥ min_seconds."""
    fn(texts[:20])  # warm-up (jieba dictionary, snownlp model load)
    n, c0, w0 = 0, time.process_time(), time.perf_counter()
    while True:
        fn(texts)
        n += len(texts)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        if wall >= min_seconds:
            return n / cpu, n / wall


def describe(vals: list[float]) -> str:
    a = np.array(vals, dtype=float)
    q = np.percentile(a, [0, 10, 25, 50, 75, 90, 100])
    return (f"n={len(a)} mean={a.mean():.1f} sd={a.std():.1f} | min {q[0]:.1f} p10 {q[1]:.1f} p25 {q[2]:.1f} "
            f"median {q[3]:.1f} p75 {q[4]:.1f} p90 {q[5]:.1f} max {q[6]:.1f}")


def histogram(vals: list[float], edges=(0, 20, 40, 60, 80, 100.0001)) -> str:
    h, _ = np.histogram(vals, bins=edges)
    return "  ".join(f"[{int(lo)},{int(min(hi, 100))}{']' if hi > 100 else ')'}: {c}"
                     for lo, hi, c in zip(edges, edges[1:], h))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr = _train_module()
    ap.add_argument("--data", type=Path, default=tr.default_data_dir())
    ap.add_argument("--model", type=Path, default=None, help="artifact (default: models/sentiment/…)")
    ap.add_argument("--no-throughput", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from scipy.stats import spearmanr
    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    model = SentimentModel.load(args.model)
    ds = tr.load_all(args.data)
    print(f"model: {model.path}  ({model.path.stat().st_size / 1e6:.2f} MB)")
    print("held-out = md5(normalized text) % 5 == 0 of each dev.jsonl (same rule as training)\n")

    # ---- polarity -------------------------------------------------------------------------
    print("== Polarity (binary; positive = P(neg) < 0.5 for ours, sentiments > 0.5 for snownlp)")
    print(f"{'corpus':36s} {'n':>5s} {'pos%':>5s} | {'ours acc':>8s} {'ours F1':>8s} | {'snow acc':>8s} {'snow F1':>8s}")
    pooled_t, pooled_o, pooled_s = [], [], []
    all_test_texts = []
    for name in tr.POLARITY_CORPORA:
        test = ds["polarity"][name][1]
        texts, y = [t for t, _ in test], [lbl for _, lbl in test]
        all_test_texts += texts
        ours = [int(p < 0.5) for p in model.negative_probs(texts)]
        snow = [int(s > 0.5) for s in snownlp_scores(texts)]
        pooled_t += y
        pooled_o += ours
        pooled_s += snow
        a_o, f_o = acc_f1(y, ours)
        a_s, f_s = acc_f1(y, snow)
        print(f"{name:36s} {len(y):5d} {100 * np.mean(y):5.1f} | {a_o:8.4f} {f_o:8.4f} | {a_s:8.4f} {f_s:8.4f}")
    a_o, f_o = acc_f1(pooled_t, pooled_o)
    a_s, f_s = acc_f1(pooled_t, pooled_s)
    print(f"{'ALL polarity (pooled)':36s} {len(pooled_t):5d} {100 * np.mean(pooled_t):5.1f} | "
          f"{a_o:8.4f} {f_o:8.4f} | {a_s:8.4f} {f_s:8.4f}")

    # ---- emotion --------------------------------------------------------------------------
    emo_test = ds["emotion"][1]
    et, ey = [t for t, _ in emo_test], [lbl for _, lbl in emo_test]
    scores = model.score(et)
    ep = [s.emotion for s in scores]
    a, f = acc_f1(ey, ep, labels=list(EMOTIONS))
    print(f"\n== Emotion: sentiment_smp2020_ewect held-out, n={len(ey)} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(Counter(ey).items()))})")
    print(f"ours 6-class accuracy {a:.4f}  macro-F1 {f:.4f}  (majority-class accuracy "
          f"{max(Counter(ey).values()) / len(ey):.4f})")
    pcf = f1_score(ey, ep, labels=list(EMOTIONS), average=None)
    print("per-class F1:  " + "  ".join(f"{c} {v:.3f}" for c, v in zip(EMOTIONS, pcf)))
    rec = recall_score(ey, ep, labels=list(EMOTIONS), average=None)
    print("per-class recall: " + "  ".join(f"{c} {v:.3f}" for c, v in zip(EMOTIONS, rec)))
    anger_rec = rec[EMOTIONS.index("angry")]
    print(f"anger recall {anger_rec:.4f}  (angry precision "
          f"{sum(p == 'angry' and t == 'angry' for p, t in zip(ep, ey)) / max(1, ep.count('angry')):.4f})")
    print("confusion (rows = true, cols = predicted, order " + ",".join(EMOTIONS) + "):")
    for c, row in zip(EMOTIONS, confusion_matrix(ey, ep, labels=list(EMOTIONS))):
        print(f"  {c:9s} " + " ".join(f"{v:4d}" for v in row))
    pol_idx = [i for i, t in enumerate(ey) if t in tr.EMO_TO_POLARITY]
    yt = [tr.EMO_TO_POLARITY[ey[i]] for i in pol_idx]
    ours = [int(scores[i].negative_prob < 0.5) for i in pol_idx]
    snow = [int(s > 0.5) for s in snownlp_scores([et[i] for i in pol_idx])]
    a_o, f_o = acc_f1(yt, ours)
    a_s, f_s = acc_f1(yt, snow)
    print(f"polarity view (happy=pos; angry/sad/fear=neg), n={len(yt)}: ours acc {a_o:.4f} F1 {f_o:.4f} | "
          f"snownlp acc {a_s:.4f} F1 {f_s:.4f}")
    a_idx = [s.emotion_index for s, t in zip(scores, ey)]
    by = {c: np.mean([v for v, t in zip(a_idx, ey) if t == c]) for c in EMOTIONS}
    print("mean utterance emotion index by true class: " + "  ".join(f"{c} {v:.1f}" for c, v in by.items()))

    # ---- in-domain neutral questions --------------------------------------------------------
    labelled = tr.labelled_dialogue_ids()
    weak = tr.load_weak_neutral(args.data, labelled)
    print(f"\n== Held-out weak-labelled neutral customer turns ({'/'.join(tr.DIALOGUE_CORPORA)}; "
          f"{len(weak)} outside the {len(labelled)} labelled dialogues)")
    for label, texts in (("md5 test split", [t for t, _ in weak if tr.split_of(t) == "test"]),
                         ("turns of the labelled dialogues", tr.labelled_weak_neutral(args.data, labelled))):
        if texts:
            wi = [s.emotion_index for s in model.score(texts)]
            print(f"  {label}: n={len(wi)} mean index {np.mean(wi):.1f}, < {FLAG_THRESHOLD:g}: "
                  f"{sum(v < FLAG_THRESHOLD for v in wi)}/{len(wi)} = {100 * np.mean([v < FLAG_THRESHOLD for v in wi]):.1f}%")
            print("    " + describe(wi))
    examples = ["请问什么时候发货", "我的订单什么时候到", "在吗", "发票怎么开", "可以帮我查一下物流吗",
                "我的订单号是12345678", "我想查一下物流", "为什么还没有发货"]
    print("  fixed examples: " + "  ".join(f"{t} {s.emotion_index:.1f}"
                                           for t, s in zip(examples, model.score(examples))))

    # ---- throughput -----------------------------------------------------------------------
    if not args.no_throughput:
        bench = all_test_texts + et
        avg_len = np.mean([len(t) for t in bench])
        ours_cpu, ours_wall = cpu_rate(model.score, bench)
        snow_cpu, snow_wall = cpu_rate(snownlp_scores, bench[:300])
        print(f"\n== Throughput (one process, BLAS 1 thread; {len(bench)} held-out texts, mean {avg_len:.0f} chars)")
        print(f"ours  SentimentModel.score (both heads + cues): {ours_cpu:8.0f} texts/CPU-second/core "
              f"({ours_wall:.0f} texts/s wall)")
        print(f"snownlp SnowNLP(text).sentiments:               {snow_cpu:8.0f} texts/CPU-second/core "
              f"({snow_wall:.0f} texts/s wall)")

    # ---- dialogue-level ---------------------------------------------------------------------
    stc_path = args.data / "stc3_helpdesk" / "dev.jsonl"
    dialogues = [json.loads(ln) for ln in open(stc_path, encoding="utf-8") if ln.strip()]
    ours_idx, snow_idx, ours_mean, ours_last, att, ratings = [], [], [], [], [], {"A": [], "S": [], "E": []}
    cue_count: Counter = Counter()
    for d in dialogues:
        cust = [t["text"] for t in d["turns"] if t["role"] == "customer" and t["text"].strip()]
        agent = [t["text"] for t in d["turns"] if t["role"] == "agent" and t["text"].strip()]
        if not cust:
            continue
        sc = model.score(cust)
        ours_idx.append(session_emotion(sc))
        ours_mean.append(session_emotion(sc, weights=[1.0] * len(sc)))
        ours_last.append(sc[-1].emotion_index)
        snow_idx.append(session_emotion([100.0 * s for s in snownlp_scores(cust)]))
        att.append(agent_attitude(model.score(agent)) if agent else None)
        cue_count.update({c for s in sc for c in s.escalation})
        for k in ratings:
            ratings[k].append(d["labels"]["quality"][k]["mean"])
    n = len(ours_idx)
    print(f"\n== STC-3 helpdesk dev: {n} dialogues with customer turns; session customer emotion index "
          f"(recency half-life 3 turns, weights {tuple(round(w, 2) for w in recency_weights(3))} for 3 turns)")
    print("ours:    " + describe(ours_idx))
    print("         " + histogram(ours_idx) + f"   flagged (< {FLAG_THRESHOLD:g}): "
          f"{sum(v < FLAG_THRESHOLD for v in ours_idx)}/{n} = {100 * np.mean([v < FLAG_THRESHOLD for v in ours_idx]):.1f}%")
    print("snownlp: " + describe(snow_idx))
    print("         " + histogram(snow_idx) + f"   flagged (< {FLAG_THRESHOLD:g}): "
          f"{sum(v < FLAG_THRESHOLD for v in snow_idx)}/{n}")
    print("human S (customer satisfaction, mean of 19 annotators, -2..2): "
          + describe(ratings["S"]))
    print("Spearman rho with the 19-annotator mean rating (p-value):")
    print(f"  {'index':40s} {'S satisfaction':>16s} {'A accomplished':>16s} {'E effectiveness':>16s}")
    for label, vals in (("ours, session (recency-weighted)", ours_idx), ("ours, session (equal weights)", ours_mean),
                        ("ours, last customer turn only", ours_last), ("snownlp x100, session (recency)", snow_idx)):
        cells = []
        for k in ("S", "A", "E"):
            rho, p = spearmanr(vals, ratings[k])
            cells.append(f"{rho:+.3f} ({p:.0e})")
        print(f"  {label:40s} " + " ".join(f"{c:>16s}" for c in cells))
    s_arr, o_arr = np.array(ratings["S"]), np.array(ours_idx)
    print(f"  flagged vs not: mean S {s_arr[o_arr < FLAG_THRESHOLD].mean():+.2f} (flagged, n={int((o_arr < FLAG_THRESHOLD).sum())})"
          f" vs {s_arr[o_arr >= FLAG_THRESHOLD].mean():+.2f} (not flagged, n={int((o_arr >= FLAG_THRESHOLD).sum())})")
    print("  flag rate and mean S by threshold (ours, recency-weighted session index):")
    for thr in (20, 30, 40, 50, FLAG_THRESHOLD):
        fl = o_arr < thr
        rest = f"{s_arr[~fl].mean():+.2f}" if (~fl).any() else "  n/a"
        print(f"    index < {thr:4g}: {int(fl.sum()):3d}/{n} flagged ({100 * fl.mean():5.1f}%), mean S flagged "
              f"{s_arr[fl].mean() if fl.any() else float('nan'):+.2f} vs rest {rest}")
    print(f"  share of dialogues with human S mean < 0: {100 * np.mean(s_arr < 0):.1f}%")
    att_ok = [(a, s) for a, s in zip(att, ratings["S"]) if a is not None]
    rho, p = spearmanr([a for a, _ in att_ok], [s for _, s in att_ok])
    print(f"agent attitude: {describe([a for a, _ in att_ok])}; Spearman with S {rho:+.3f} (p={p:.0e})")
    print("escalation cues (dialogues with >=1 customer cue): "
          + (", ".join(f"{k} {v}" for k, v in cue_count.most_common()) or "none"))

    jddc_path = args.data / "jddc_sample" / "dev.jsonl"
    if jddc_path.is_file():
        jd = [json.loads(ln) for ln in open(jddc_path, encoding="utf-8") if ln.strip()]
        jd_idx, jd_att, jd_cues = [], [], Counter()
        for d in jd:
            cust = [t["text"] for t in d["turns"] if t["role"] == "customer" and t["text"].strip()]
            agent = [t["text"] for t in d["turns"] if t["role"] == "agent" and t["text"].strip()]
            if cust:
                sc = model.score(cust)
                jd_idx.append(session_emotion(sc))
                jd_cues.update({c for s in sc for c in s.escalation})
            if agent:
                jd_att.append(agent_attitude(model.score(agent)))
        print(f"\n== JDDC dev (JD.com chats, no labels): {len(jd_idx)} sessions")
        print("customer emotion index: " + describe(jd_idx))
        print("                        " + histogram(jd_idx) + f"   flagged (< {FLAG_THRESHOLD:g}): "
              f"{sum(v < FLAG_THRESHOLD for v in jd_idx)}/{len(jd_idx)}; "
              + ", ".join(f"< {t}: {sum(v < t for v in jd_idx)}" for t in (20, 30, 40, 50)))
        print("agent attitude:         " + describe(jd_att))
        print("escalation cues (sessions): " + (", ".join(f"{k} {v}" for k, v in jd_cues.most_common()) or "none"))


if __name__ == "__main__":
    main()
