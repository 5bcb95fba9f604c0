"""The scorecard on its tuning labels with the solution-turn classifier cross-validated.

    python scripts/cv_turn_model.py [--shared ../shared/data] [eval_scoring.py options ...]

``scripts/train_turn_model.py`` fits the shipped classifier on the tuning labels (A, D, F), so
``eval_scoring.py`` on those labels is in-sample for it.  This script first computes each tuning
turn's out-of-fold probability (5 folds grouped by session, the training script's own folds and
settings), then runs ``eval_scoring.py`` with the card's ``classifier`` rules answering from those
probabilities (turns outside the tuning labels get the shipped model's).  Everything else is
``eval_scoring.py``: pass e.g. ``--labels FILE`` with the A+D+F labels in one file, ``--labels-b
/dev/null --labels-c --labels-e`` to leave the other sets (and the held-out ones) out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import eval_scoring  # noqa: E402
import train_turn_model as T  # noqa: E402

import qc_pipeline.scoring.operators.classifier as classifier_op  # noqa: E402
from qc_pipeline.scoring.turn_model import load_turn_model  # noqa: E402


class OutOfFold:
    """A turn model that answers with out-of-fold probabilities where it has them."""

    def __init__(self, oof: dict[str, float], fallback) -> None:
        self.oof, self.fallback = oof, fallback

    def proba(self, texts):
        missing = [t for t in texts if t not in self.oof]
        fallback = dict(zip(missing, self.fallback.proba(missing))) if missing else {}
        return np.array([self.oof[t] if t in self.oof else fallback[t] for t in texts])


def main() -> None:
    shared = Path(sys.argv[sys.argv.index("--shared") + 1]) if "--shared" in sys.argv else REPO.parent / "shared" / "data"
    _, _, rows = T.tuning_rows(shared)
    by_text: dict[str, list[float]] = {}
    for (_, text, _), p in zip(rows, T.cross_validated(rows)):
        by_text.setdefault(text, []).append(float(p))
    oof = {t: float(np.mean(ps)) for t, ps in by_text.items()}   # a text seen in several folds: the mean
    print(f"out-of-fold probabilities for {len(oof)} distinct tuning turns")
    classifier_op.load_turn_model = lambda path: OutOfFold(oof, load_turn_model(path))
    eval_scoring.main()


if __name__ == "__main__":
    main()
