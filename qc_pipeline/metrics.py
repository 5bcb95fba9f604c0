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
