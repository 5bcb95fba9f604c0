"""Error rates and agreement for evaluation scripts, tests and the review app's calibration."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Hashable, Iterable, Optional, Sequence

_DIGITS_HANZI = "零一二三四五六七八九"
_DIGITS = str.maketrans("0123456789", _DIGITS_HANZI)
_PUNCT_RE = re.compile(r"[\s\W_]+", re.UNICODE)


def cohen_kappa(pairs: Iterable[tuple[Hashable, Hashable]]) -> Optional[float]:
    """Cohen's κ of (rater A, rater B) category pairs; None when undefined (no pairs, or chance agreement 1)."""
    pairs = list(pairs)
    n = len(pairs)
    if not n:
        return None
    po = sum(1 for a, b in pairs if a == b) / n
    ca, cb = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    pe = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    return None if pe >= 1.0 else (po - pe) / (1 - pe)


def precision_recall_f1(pred: Sequence[bool], gold: Sequence[bool]) -> tuple[float, float, float]:
    """Precision, recall (nan when undefined) and F1 (0 without a true positive) of boolean predictions."""
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    return p, r, (2 * p * r / (p + r) if tp else 0.0)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


_NUMBER_RE = re.compile(r"(\d+)(?:\.(\d+))?(%?)")
_DIGIT_RUN_RE = re.compile(r"(?<![\d.])\d+(?:[ ,，、\-]+\d+)+(?![\d.%])")
# a number followed by one of these is an amount/count, read as a cardinal (三百五十元, 十五万, 二十八日)
_UNITS = "元块角分毛万亿千百个人名岁次天日月号小点分秒米里克斤吨斤台辆家位年度倍多余"


def _below_10k(n: int) -> str:
    out, gap = "", False
    for place, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d, n = divmod(n, place)
        if d:
            out += ("零" if gap else "") + _DIGITS_HANZI[d] + name
            gap = False
        elif out:
            gap = True
    return out


def _cardinal_int(n: int) -> str:
    for value, name in ((10 ** 8, "亿"), (10 ** 4, "万")):
        if n >= value:
            hi, lo = divmod(n, value)
            return _cardinal_int(hi) + name + (("零" if lo < value // 10 else "") + _cardinal_int(lo) if lo else "")
    return _below_10k(n) or "零"


def _cardinal(digits: str) -> str:
    """Cardinal reading of a non-negative integer (350 -> 三百五十, 10 -> 十, 1005 -> 一千零五, 15万 -> 十五万)."""
    out = _cardinal_int(int(digits))
    return out[1:] if out.startswith("一十") else out


def spell_numbers(text: str) -> str:
    """Arabic numbers -> hanzi as they are read aloud: digit by digit for codes and phone numbers (three or
    more digits not followed by a unit, a leading zero, a year), else as a cardinal; ``3.5`` -> 三点五,
    ``50%`` -> 百分之五十.  幺 (1 in read-out digit strings) becomes 一.  Applied to reference and hypothesis
    alike, so CER compares the same spelling on both sides."""
    def read(m: re.Match) -> str:
        whole, frac, pct = m.group(1), m.group(2), m.group(3)
        nxt = text[m.end():m.end() + 1]
        by_digit = (len(whole) > 1 and whole.startswith("0")) or nxt == "年" or (
            len(whole) >= 3 and not frac and not pct and (not nxt or nxt not in _UNITS))
        spoken = whole.translate(_DIGITS) if by_digit or len(whole) > 16 else _cardinal(whole)
        if frac:
            spoken += "点" + frac.translate(_DIGITS)
        return ("百分之" + spoken) if pct else spoken

    # digit groups separated only by spaces, commas or dashes are one code read digit by digit (13628066 930)
    text = _DIGIT_RUN_RE.sub(lambda m: re.sub(r"\D", "", m.group(0)).translate(_DIGITS), text)
    return _NUMBER_RE.sub(read, text).replace("幺", "一")


def normalize_zh(text: str, digits_to_hanzi: bool = True) -> str:
    """NFKC, drop punctuation/space, lowercase; optionally spell Arabic numbers as hanzi the way they are
    read (:func:`spell_numbers`: phone and ID numbers digit by digit, amounts as cardinals)."""
    text = unicodedata.normalize("NFKC", text).lower()
    if digits_to_hanzi:
        text = spell_numbers(text)
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


def read_uem(path) -> list[tuple[float, float]]:
    """Scored regions of a UEM file (``uri channel start end`` per line)."""
    regions = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            if len(f) >= 4:
                regions.append((float(f[2]), float(f[3])))
    return regions


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


def diarization_error(ref: list[Segment], hyp: list[Segment], collar: float = 0.0, step: float = 0.01,
                      uem: list[tuple[float, float]] | None = None) -> dict:
    """Frame-based DER with optimal speaker mapping (Hungarian).  ``collar`` seconds around every
    reference boundary are not scored (NIST convention: 0.25), nor anything outside ``uem`` regions
    when given.  Returns rates over scored speech (and ``ref_speech_s``, the scored reference speech)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    end = max([e for _, e, _ in ref + hyp] + [0.0])
    n = int(np.ceil(end / step)) + 1
    rn, hn = sorted({s for *_, s in ref}), sorted({s for *_, s in hyp})
    R, H = _frames(ref, n, step, rn), _frames(hyp, n, step, hn)
    scored = np.ones(n, bool)
    if uem is not None:
        scored[:] = False
        for s, e in uem:
            scored[max(0, int(round(s / step))):int(round(e / step))] = True
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
    ref_s = float(total * step)
    total = max(total, 1)  # no scored reference speech: rates are errors per frame, not NaN
    return {"der": (missed + fa + confusion) / total, "missed": missed / total, "false_alarm": fa / total,
            "confusion": confusion / total, "ref_speech_s": ref_s,
            "mapping": {hn[c]: rn[r] for r, c in zip(rows, cols)}}
