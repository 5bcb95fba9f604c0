"""Error rates for evaluation scripts and tests."""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

_DIGITS = str.maketrans("0123456789", "零一二三四五六七八九")
_PUNCT_RE = re.compile(r"[\s\W_]+", re.UNICODE)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def normalize_zh(text: str, digits_to_hanzi: bool = True) -> str:
    """NFKC, drop punctuation/space, lowercase; optionally read Arabic digits one by one as hanzi
    (phone and ID numbers are spoken digit by digit in calls)."""
    text = unicodedata.normalize("NFKC", text).lower()
    if digits_to_hanzi:
        text = text.translate(_DIGITS)
    return _PUNCT_RE.sub("", text)


def cer(ref: str, hyp: str, digits_to_hanzi: bool = True) -> tuple[int, int]:
    """(errors, reference characters) after :func:`normalize_zh`."""
    r, h = normalize_zh(ref, digits_to_hanzi), normalize_zh(hyp, digits_to_hanzi)
    return edit_distance(r, h), len(r)


def wer(ref: str, hyp: str) -> tuple[int, int]:
    norm = lambda s: re.sub(r"[^\w\s']", " ", s.lower()).split()  # noqa: E731
    r, h = norm(ref), norm(hyp)
    return edit_distance(r, h), len(r)


# ---------------------------------------------------------------- diarization
Segment = tuple[float, float, str]  # start, end, speaker


def read_rttm(path) -> list[Segment]:
    segs = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            if len(f) >= 8 and f[0] == "SPEAKER":
                start, dur = float(f[3]), float(f[4])
                segs.append((start, start + dur, f[7]))
    return segs


def write_rttm(path, uri: str, segments: list[Segment]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for s, e, spk in segments:
            fh.write(f"SPEAKER {uri} 1 {s:.3f} {e - s:.3f} <NA> <NA> {spk} <NA> <NA>\n")


def _frames(segments: list[Segment], n: int, step: float, names: list[str]):
    import numpy as np

    m = np.zeros((n, len(names)), bool)
    for s, e, spk in segments:
        m[int(round(s / step)):int(round(e / step)), names.index(spk)] = True
    return m


def diarization_error(ref: list[Segment], hyp: list[Segment], collar: float = 0.0, step: float = 0.01) -> dict:
    """Frame-based DER with optimal speaker mapping (Hungarian).  ``collar`` seconds around every
    reference boundary are not scored (NIST convention: 0.25).  Returns rates over scored speech."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    end = max([e for _, e, _ in ref + hyp] + [0.0])
    n = int(np.ceil(end / step)) + 1
    rn, hn = sorted({s for *_, s in ref}), sorted({s for *_, s in hyp})
    R, H = _frames(ref, n, step, rn), _frames(hyp, n, step, hn)
    scored = np.ones(n, bool)
    if collar > 0:
        for s, e, _ in ref:
            for b in (s, e):
                scored[max(0, int((b - collar) / step)):int((b + collar) / step)] = False
    R, H = R[scored], H[scored]
    nref, nhyp = R.sum(1), H.sum(1)
    total = nref.sum()
    overlap = R.T.astype(float) @ H.astype(float) if hn else np.zeros((len(rn), 0))
    rows, cols = linear_sum_assignment(-overlap) if hn and rn else ([], [])
    correct = overlap[rows, cols].sum() if len(rows) else 0.0
    missed = np.maximum(0, nref - nhyp).sum()
    fa = np.maximum(0, nhyp - nref).sum()
    confusion = np.minimum(nref, nhyp).sum() - correct
    return {"der": (missed + fa + confusion) / total, "missed": missed / total, "false_alarm": fa / total,
            "confusion": confusion / total, "ref_speech_s": total * step,
            "mapping": {hn[c]: rn[r] for r, c in zip(rows, cols)}}
