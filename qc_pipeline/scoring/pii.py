"""Personal data in transcripts: phone, ID-card and bank-card numbers, also spoken as Chinese digits.

ASR writes numbers either as Arabic digits ("13812345678") or as hanzi read digit by digit
("一三八一二三四五六七八", with 幺 for 1 and 两 for 2).  Both are found; masking keeps the first 3
and last 4 digits (a common call-center convention) and replaces the rest with ``*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HANZI_DIGITS = {"零": "0", "〇": "0", "○": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2",
                 "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "拐": "7", "八": "8", "九": "9", "勾": "9"}
_DIGIT_CHARS = "0-9０-９" + "".join(_HANZI_DIGITS)
# runs of digits, allowing spaces/dashes between them (people group numbers when they read them out)
_RUN = re.compile(rf"[{_DIGIT_CHARS}xX](?:[\s\-,，、]*[{_DIGIT_CHARS}xX])*")


@dataclass(frozen=True)
class PiiHit:
    kind: str        # phone | id_card | bank_card
    start: int       # char offsets in the text
    end: int
    digits: str      # normalized digits


def _normalize(run: str) -> str:
    out = []
    for ch in run:
        if ch in _HANZI_DIGITS:
            out.append(_HANZI_DIGITS[ch])
        elif ch.isdigit():
            out.append(str(int(ch)))
        elif ch in "xX":
            out.append("X")
    return "".join(out)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_checksum_ok(d: str) -> bool:
    s = sum(int(c) * w for c, w in zip(d[:17], _ID_WEIGHTS))
    return "10X98765432"[s % 11] == d[17].upper()


def classify(digits: str) -> str | None:
    """Kind of a normalized digit string, or None."""
    n = len(digits)
    if "X" in digits[:-1]:
        return None
    if n == 11 and re.fullmatch(r"1[3-9]\d{9}", digits):
        return "phone"
    if n == 18 and re.fullmatch(r"\d{17}[\dX]", digits) and _id_checksum_ok(digits):
        return "id_card"
    if n == 15 and digits.isdigit() and re.fullmatch(r"[1-8]\d{14}", digits):
        return "id_card"  # old 15-digit ID
    if 16 <= n <= 19 and digits.isdigit() and _luhn_ok(digits):
        return "bank_card"
    if n == 18 and digits.isdigit():
        return "id_card"  # ASR often garbles one digit; an 18-digit number read out is still an ID
    return None


def find_pii(text: str) -> list[PiiHit]:
    hits = []
    for m in _RUN.finditer(text):
        digits = _normalize(m.group())
        kind = classify(digits)
        if kind:
            hits.append(PiiHit(kind, m.start(), m.end(), digits))
    return hits


_DIGIT_SET = frozenset("0123456789０１２３４５６７８９") | frozenset(_HANZI_DIGITS)


def mask_digits(text: str) -> str:
    """Every digit character (Arabic, full-width or spoken hanzi) replaced by ``*``."""
    return "".join("*" if c in _DIGIT_SET else c for c in text)


def mask_text(text: str) -> tuple[str, int]:
    """Mask every PII number in ``text``; returns ``(masked, n_masked)``."""
    hits = find_pii(text)
    if not hits:
        return text, 0
    out, pos = [], 0
    for h in hits:
        out.append(text[pos:h.start])
        keep_head, keep_tail = 3, 4
        masked = h.digits[:keep_head] + "*" * max(0, len(h.digits) - keep_head - keep_tail) + h.digits[-keep_tail:]
        out.append(masked)
        pos = h.end
    out.append(text[pos:])
    return "".join(out), len(hits)
