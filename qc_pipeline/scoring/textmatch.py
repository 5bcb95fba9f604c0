"""Tolerant text matching: exact, homophone (pinyin) and loose-pinyin keyword search, clause
breaks, and a lexical similarity on pinyin bigrams.

Whisper-base on Mandarin writes homophones (服务 → 伏务, 核实 → 合适); matching keywords on
toneless pinyin finds them.  ``pinyin_loose`` also merges the pairs southern speakers and ASR
confuse most (zh/z, ch/c, sh/s, n/l, -ng/-n).  Fuzz is an ASR tool: the keyword operator uses it
on audio only, on word boundaries, and never for words with a common homophone (see
:mod:`qc_pipeline.scoring.words`).
"""

from __future__ import annotations

import functools
import re
import unicodedata

_HAN = re.compile(r"[\u4e00-\u9fff]")
_STRIP = re.compile(r"[\s\W_]+", re.UNICODE)
# stripped characters that do not end a clause (inside numbers, names, placeholders)
_JOINERS = frozenset("-_·'’‘\"“”[]【】()（）<>《》/\\@#&*+=|^`")
MODES = ("exact", "pinyin", "pinyin_loose")


def normalize(text: str) -> str:
    """NFKC, lowercase, no spaces/punctuation — the form keywords are matched against."""
    return _STRIP.sub("", unicodedata.normalize("NFKC", text).lower())


def normalize_breaks(text: str) -> tuple[str, frozenset[int]]:
    """``normalize(text)`` plus the offsets in it where a clause ends (punctuation or white space
    stood there): keyword search and negation look inside one clause."""
    out: list[str] = []
    breaks = {0}
    n = 0
    for ch in unicodedata.normalize("NFKC", text).lower():
        if _STRIP.match(ch):
            if ch not in _JOINERS:
                breaks.add(n)
        else:
            out.append(ch)
            n += 1
    breaks.add(n)
    return "".join(out), frozenset(breaks)


@functools.lru_cache(maxsize=65536)
def _char_pinyin(ch: str) -> str:
    if not _HAN.match(ch):
        return ch
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(ch, style=Style.NORMAL)[0]


def _loosen(syl: str) -> str:
    for a, b in (("zh", "z"), ("ch", "c"), ("sh", "s")):
        if syl.startswith(a):
            syl = b + syl[len(a):]
    if syl.startswith("n"):
        syl = "l" + syl[1:]
    if syl.endswith("ng"):
        syl = syl[:-1]
    return syl


@functools.lru_cache(maxsize=16384)
def syllables(norm_text: str, mode: str = "pinyin") -> tuple[str, ...]:
    """One token per character of already-normalized text (pinyin for hanzi)."""
    if mode == "exact":
        return tuple(norm_text)
    from pypinyin import Style, lazy_pinyin

    # phrase-aware conversion gets polyphones right (e.g. 银行 hang); one syllable per hanzi
    out = list(lazy_pinyin(norm_text, style=Style.NORMAL, errors=lambda s: list(s)))
    if len(out) != len(norm_text):  # fall back to per-char when segmentation disagrees
        out = [_char_pinyin(c) for c in norm_text]
    return tuple(_loosen(s) for s in out) if mode == "pinyin_loose" else tuple(out)


def find_all(keyword_norm: str, text_norm: str, mode: str = "exact") -> list[int]:
    """Every start offset of ``keyword_norm`` in ``text_norm`` under ``mode`` (exact occurrences
    first, then the homophone-only ones)."""
    if not keyword_norm or len(keyword_norm) > len(text_norm):
        return []
    exact = [m.start() for m in re.finditer(f"(?={re.escape(keyword_norm)})", text_norm)]
    if mode == "exact":
        return exact
    k, t = syllables(keyword_norm, mode), syllables(text_norm, mode)
    n = len(k)
    fuzzy = [i for i in range(len(t) - n + 1) if t[i:i + n] == k and i not in exact]
    return exact + fuzzy


def find(keyword_norm: str, text_norm: str, mode: str = "exact") -> int:
    """Start offset of ``keyword_norm`` in ``text_norm`` under ``mode``, or -1."""
    pos = text_norm.find(keyword_norm) if keyword_norm else -1
    if pos >= 0 or mode == "exact":
        return pos
    found = find_all(keyword_norm, text_norm, mode)
    return min(found) if found else -1


def _bigrams(tokens: tuple[str, ...]) -> set[tuple[str, str]]:
    return {tokens[i:i + 2] for i in range(len(tokens) - 1)} if len(tokens) > 1 else {tokens} if tokens else set()


PLACEHOLDER = re.compile(r"\[[^\]]{0,12}\]")  # anonymisation tags such as [订单x], [数字x]


def coverage(source: str, restatement: str, min_shared: int = 3) -> float:
    """Share of ``source``'s pinyin-syllable bigrams that ``restatement`` repeats (homophone
    tolerant), 0..1; 0 when fewer than ``min_shared`` bigrams are shared (short or templated
    turns such as "[订单x]" must not count as restating anything)."""
    sa = _bigrams(syllables(normalize(PLACEHOLDER.sub("", source)), "pinyin"))
    sb = _bigrams(syllables(normalize(PLACEHOLDER.sub("", restatement)), "pinyin"))
    shared = len(sa & sb)
    if not sa or shared < min_shared:
        return 0.0
    return shared / len(sa)
