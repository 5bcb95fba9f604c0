"""Train a turn classifier for the scorecard's ``classifier`` operator (qc_pipeline.scoring.turn_model).

    python scripts/train_turn_model.py [--shared ../shared/data] [--labels FILE ...] [--out PATH]

The default card's ``solution_turn`` model: is this agent utterance (part of) the solution, the
answer or the transfer/ticket (GUIDE.md section 6, ``solution_turns``)?  One row per agent utterance of
every labelled session: positive when the annotator listed its turn in ``solution_turns``, negative
otherwise (greetings, questions back, requests for details, holding lines, boilerplate, and every agent
turn of a session whose ``solution_given`` is 0 or null).

Labels: the tuning samples only (annotator A, D, F: ``labels_v2.jsonl``, ``labels_v2_d*``,
``labels_v2_f*``).  The held-out sample C and its second pass E are refused, and so is B (a second
labelling of A's sessions: the same dialogues twice).  Dialogues are read in place from the shared
dev package (research licence): the model file holds only character n-grams up to three characters
with their weights, no text.

Model: ``TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)`` and
``LogisticRegression(C=4, class_weight="balanced")``.  The script prints the 5-fold cross-validated
ROC AUC (folds grouped by session).  Re-running on the same labels and library versions writes the
same file.
"""

from __future__ import annotations

import argparse
import json
import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from eval_scoring import HELD_OUT_GLOBS, LABELS, load_dialogues, load_jsonl, utterance_index  # noqa: E402

from qc_pipeline.inputs import chat_to_source  # noqa: E402
from qc_pipeline.models import sha256_file  # noqa: E402
from qc_pipeline.pipeline import Pipeline  # noqa: E402
from qc_pipeline.scoring.turn_model import to_dict  # noqa: E402
from qc_pipeline.stages.chat import ChatStage  # noqa: E402

DEFAULT_LABELS = ("labels_v2.jsonl", "labels_v2_d*.jsonl", "labels_v2_f*.jsonl")
REFUSED = ("labels_v2_b.jsonl", *HELD_OUT_GLOBS.values())   # the second pass on A and the held-out sample
DEFAULT_OUT = REPO / "qc_pipeline" / "configs" / "scorecards" / "solution_turn-v1.json"
PARAMS = {"ngram_range": (1, 3), "min_df": 2, "C": 4.0}


def label_files(given: list[str] | None) -> list[Path]:
    files = [Path(f) for f in given] if given else sorted(p for g in DEFAULT_LABELS for p in LABELS.glob(g))
    for f in files:
        if any(fnmatch(f.name, pattern) for pattern in REFUSED):
            raise SystemExit(f"{f}: held-out or second-pass labels are never trained on")
    return files


def turn_rows(labels: list[dict], dialogues: dict[str, dict]) -> list[tuple[str, str, int]]:
    """(dialogue_id, agent utterance text, 1 if it is a labelled solution turn) for every labelled session."""
    chat = Pipeline([ChatStage()])
    chat.setup()
    rows = []
    for lab in labels:
        did = lab["dialogue_id"]
        d = dialogues[did]
        new = utterance_index(d)
        positive = {new[t] for t in lab["solution_turns"] if t in new}
        for u in chat.run_one(chat_to_source(d, did)).utterances:
            if u.role == "agent":
                rows.append((did, u.text, int(u.turn_index in positive)))
    return rows


def tuning_rows(shared: Path, given: list[str] | None = None) -> tuple[list[Path], list[dict], list]:
    """(label files, labels, :func:`turn_rows`) of the tuning labels (or ``given`` files), one labelling per
    session."""
    files = label_files(given)
    labels = [lab for f in files for lab in load_jsonl(f)]
    ids = [lab["dialogue_id"] for lab in labels]
    if len(set(ids)) != len(ids):
        raise SystemExit("a session is labelled twice in the given files: pass one labelling per session")
    return files, labels, turn_rows(labels, load_dialogues(shared))


def fit(texts: list[str], y: np.ndarray):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer="char", ngram_range=PARAMS["ngram_range"], min_df=PARAMS["min_df"],
                          sublinear_tf=True)
    lr = LogisticRegression(C=PARAMS["C"], class_weight="balanced", max_iter=5000)
    lr.fit(vec.fit_transform(texts), y)
    return vec, lr


def cross_validated(rows, folds: int = 5) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    texts = [r[1] for r in rows]
    y = np.array([r[2] for r in rows])
    p = np.zeros(len(rows))
    for tr, te in GroupKFold(folds).split(texts, y, [r[0] for r in rows]):
        vec, lr = fit([texts[i] for i in tr], y[tr])
        p[te] = lr.predict_proba(vec.transform([texts[i] for i in te]))[:, 1]
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--labels", nargs="*", help="label files (default: the tuning samples A, D, F)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    from sklearn import __version__ as sklearn_version
    from sklearn.metrics import roc_auc_score

    files, labels, rows = tuning_rows(Path(args.shared), args.labels)
    texts, y = [r[1] for r in rows], np.array([r[2] for r in rows])
    auc = roc_auc_score(y, cross_validated(rows))
    print(f"{len(labels)} sessions, {len(rows)} agent utterances, {int(y.sum())} solution turns; "
          f"5-fold CV ROC AUC (grouped by session) {auc:.3f}")
    vec, lr = fit(texts, y)
    meta = {
        "target": "agent utterance is (part of) the solution, answer or transfer/ticket (GUIDE.md section 6)",
        "labels": {f.name: sha256_file(f) for f in files},
        "sessions": len(labels), "utterances": len(rows), "positives": int(y.sum()),
        "cv_roc_auc": round(float(auc), 4), "params": {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in PARAMS.items()},
        "scikit_learn": sklearn_version,
        "data_licence": "fitted on research / internal-evaluation dev dialogues (JDDC, CSDS, MobileCS, STC-3, "
                        "see ../shared/data); retrain on your own labelled turns before production use",
    }
    out = Path(args.out)
    out.write_text(json.dumps(to_dict(vec, lr, meta), ensure_ascii=False, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {len(vec.vocabulary_)} n-grams)")


if __name__ == "__main__":
    main()
