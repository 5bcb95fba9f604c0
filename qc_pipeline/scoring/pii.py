"""Personal data in transcripts: phone, ID-card and bank-card numbers, also spoken as Chinese digits,
and the one masking step applied to a finished record before anything is written.

ASR writes numbers either as Arabic digits ("13812345678") or as hanzi read digit by digit
("一三八一二三四五六七八", with 幺 for 1 and 两 for 2), often in groups ("138 1234 5678", "+86 138…"),
several in a row ("13812345678、13987654321"), or split over two turns of the same speaker.  A run of
digit groups is cut into the longest numbers that validate:

* phone: 11 digits ``1[3-9]…`` (a ``+86`` / ``0086`` prefix is not part of it);
* ID card: 18 characters with a valid province code, birth date and ISO 7064 check digit (or the old
  15-digit form with a valid province and date), not glued to Latin letters (``AB110101…`` is a code);
* bank card: 16–19 digits passing the Luhn check, not glued to Latin letters.

Masking keeps the first 3 and last 4 digits (a common call-center convention) and replaces the rest
with ``*``.  A 15–19 digit number that does not validate is masked too (an ID or card with one digit
misheard by ASR), but is not reported as a hit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Optional, Sequence

_HANZI_DIGITS = {"零": "0", "〇": "0", "○": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2",
                 "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "拐": "7", "八": "8", "九": "9", "勾": "9"}
_DIGIT_CHARS = "0-9０-９" + "".join(_HANZI_DIGITS)
_GROUP = re.compile(rf"[{_DIGIT_CHARS}]+[xX]?")
_SEP = re.compile(r"[\s\-,，、]*")
_LETTER = re.compile(r"[A-Za-z]")
# what may stand between a number and the edge of its turn when it goes on in the next turn
_EDGE = re.compile(r"^[\s,，、。.…\-~～:：]*$")
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                        50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83})
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
MAX_CONTINUATION_TURNS = 3   # a number may be read out over at most this many turns of one speaker


@dataclass(frozen=True)
class PiiHit:
    kind: str        # phone | id_card | bank_card
    start: int       # char offsets in the text
    end: int
    digits: str      # normalized digits


@dataclass(frozen=True)
class _Group:
    turn: int
    start: int
    end: int
    digits: str


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


def _date_ok(yyyymmdd: str) -> bool:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= dt.date.today()


def _id_ok(d: str) -> bool:
    if len(d) == 18:
        if not (d[:17].isdigit() and int(d[:2]) in _PROVINCES and _date_ok(d[6:14])):
            return False
        s = sum(int(c) * w for c, w in zip(d[:17], _ID_WEIGHTS))
        return "10X98765432"[s % 11] == d[17]
    return len(d) == 15 and d.isdigit() and int(d[:2]) in _PROVINCES and _date_ok("19" + d[6:12])


def classify(digits: str) -> Optional[str]:
    """Kind of a normalized digit string (no country prefix), or None."""
    if "X" in digits[:-1]:
        return None
    if re.fullmatch(r"1[3-9]\d{9}", digits):
        return "phone"
    if _id_ok(digits):
        return "id_card"
    if 16 <= len(digits) <= 19 and digits.isdigit() and _luhn_ok(digits):
        return "bank_card"
    return None


def _candidate(text_of, groups: Sequence[_Group]) -> tuple[Optional[str], int]:
    """``(kind, country-prefix digits at the front)`` of the number the groups spell, or (None, 0)."""
    digits = "".join(g.digits for g in groups)
    kind = classify(digits)
    if kind is not None:
        return (None, 0) if kind != "phone" and _glued(text_of, groups) else (kind, 0)
    for prefix in ("0086", "86"):  # +86 138…: only inside the first group, "+86 138 …" splits by itself
        if digits.startswith(prefix) and len(prefix) < len(groups[0].digits) and classify(digits[len(prefix):]) == "phone":
            return "phone", len(prefix)
    return None, 0


def _glued(text_of, groups: Sequence[_Group]) -> bool:
    first, last = groups[0], groups[-1]
    before = text_of(first.turn)[first.start - 1:first.start] if first.start else ""
    after = text_of(last.turn)[last.end:last.end + 1]
    return bool(_LETTER.match(before) or _LETTER.match(after))


def _runs(text: str, turn: int) -> list[list[_Group]]:
    """Runs of digit groups with only separators between them."""
    runs: list[list[_Group]] = []
    for m in _GROUP.finditer(text):
        g = _Group(turn, m.start(), m.end(), _normalize(m.group()))
        prev = runs[-1][-1] if runs else None
        if prev is not None and prev.turn == turn and _SEP.fullmatch(text[prev.end:g.start]):
            runs[-1].append(g)
        else:
            runs.append([g])
    return runs


@dataclass(frozen=True)
class _Found:
    kind: Optional[str]          # None: a long number that does not validate (masked, not reported)
    groups: tuple[_Group, ...]
    skip: int                    # country-prefix digits left in place


def _segment(text_of, run: list[_Group]) -> list[_Found]:
    """The longest valid numbers, left to right; stretches of 15-19 leftover digits become unverified numbers."""
    found: list[_Found] = []
    rest: list[_Group] = []

    def unverified() -> None:
        digits = "".join(g.digits for g in rest)
        if 15 <= len(digits) <= 19 and digits.isdigit():
            found.append(_Found(None, tuple(rest), 0))
        rest.clear()

    i = 0
    while i < len(run):
        for j in range(len(run), i, -1):
            kind, skip = _candidate(text_of, run[i:j])
            if kind:
                unverified()
                found.append(_Found(kind, tuple(run[i:j]), skip))
                i = j
                break
        else:
            rest.append(run[i])
            i += 1
    unverified()
    return found


def _replacements(found: _Found) -> dict[int, tuple[int, int, str]]:
    """turn -> (start, end, masked text): the number's part in each turn it spans, separators dropped."""
    national = "".join(g.digits for g in found.groups)[found.skip:]
    n = len(national)
    masked = "".join(c if k < 3 or k >= n - 4 else "*" for k, c in enumerate(national))
    out: dict[int, tuple[int, int, str]] = {}
    pos = -found.skip  # index in ``national`` of the current group's first digit
    for g in found.groups:
        lo = max(pos, 0)  # country-prefix digits stay in place
        piece = masked[lo:pos + len(g.digits)]
        if g.turn in out:
            start, _, text = out[g.turn]
            out[g.turn] = (start, g.end, text + piece)
        else:
            out[g.turn] = (g.start + lo - pos, g.end, piece)
        pos += len(g.digits)
    return out


def _scan(texts: Sequence[str], speakers: Optional[Sequence[object]] = None) -> list[_Found]:
    """Numbers in a sequence of turns; with ``speakers``, a number at the end of a turn may go on at the
    start of that speaker's next turn."""
    runs = [_runs(t, i) for i, t in enumerate(texts)]
    used: set[tuple[int, int]] = set()
    found: list[_Found] = []
    for t, turn_runs in enumerate(runs):
        for r, run in enumerate(turn_runs):
            if (t, r) in used:
                continue
            used.add((t, r))
            chain, cur, r_cur = list(run), t, r
            while speakers is not None and len({g.turn for g in chain}) < MAX_CONTINUATION_TURNS:
                nxt = _next_turn(speakers, cur)
                if (nxt is None or r_cur != len(runs[cur]) - 1 or not runs[nxt] or (nxt, 0) in used
                        or not _EDGE.match(texts[cur][runs[cur][r_cur][-1].end:])
                        or not _EDGE.match(texts[nxt][:runs[nxt][0][0].start])):
                    break
                chain += runs[nxt][0]
                used.add((nxt, 0))
                cur, r_cur = nxt, 0
            found.extend(_segment(texts.__getitem__, chain))
    return found


def _next_turn(speakers: Sequence[object], t: int) -> Optional[int]:
    return next((u for u in range(t + 1, len(speakers)) if speakers[u] == speakers[t]), None)


def find_pii(text: str) -> list[PiiHit]:
    hits = []
    for f in _scan([text]):
        if f.kind:
            digits = "".join(g.digits for g in f.groups)[f.skip:]
            hits.append(PiiHit(f.kind, f.groups[0].start + f.skip, f.groups[-1].end, digits))
    return hits


_DIGIT_SET = frozenset("0123456789０１２３４５６７８９") | frozenset(_HANZI_DIGITS)


def mask_digits(text: str) -> str:
    """Every digit character (Arabic, full-width or spoken hanzi) replaced by ``*``."""
    return "".join("*" if c in _DIGIT_SET else c for c in text)


def _apply(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, pos = [], 0
    for start, end, masked in sorted(spans):
        out.append(text[pos:start])
        out.append(masked)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def mask_turns(texts: Sequence[str], speakers: Sequence[object]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Mask every number in a session's turns (numbers may go on in the same speaker's next turn).
    Returns per turn ``(masked text, [(original piece, masked piece), ...])``; the pieces let text
    quoted from a turn elsewhere (scoring evidence) be masked the same way."""
    per_turn: dict[int, list[tuple[int, int, str]]] = {}
    for f in _scan(texts, speakers):
        for turn, span in _replacements(f).items():
            per_turn.setdefault(turn, []).append(span)
    out = []
    for t, text in enumerate(texts):
        spans = per_turn.get(t, [])
        out.append((_apply(text, spans), [(text[s:e], m) for s, e, m in spans]))
    return out


def mask_text(text: str) -> tuple[str, int]:
    """Mask every number in one text; returns ``(masked, n_numbers)``."""
    found = _scan([text])
    spans = [_replacements(f)[0] for f in found]
    return _apply(text, spans), len(found)


def mask_quote(text: str, pieces: Sequence[tuple[str, str]]) -> str:
    """Text quoting a turn (evidence): the turn's masked pieces replaced, then anything else masked."""
    for original, masked in sorted(pieces, key=lambda p: -len(p[0])):
        text = text.replace(original, masked)
    return mask_text(text)[0]


#: Free-text fields of ``stages.summarize.Summary``.
SUMMARY_TEXT_FIELDS = ("reason_text", "problem", "action", "outcome")


def mask_record(rec):
    """``rec`` with personal numbers masked everywhere it carries free text: utterance text and words,
    scoring evidence, the call summary, the error detail.  Applied once, to the finished record, before any sink."""
    utts = rec.utterances
    masked = mask_turns([u.text for u in utts], [(u.role, u.speaker) for u in utts])
    pieces = {u.turn_index: p for u, (_, p) in zip(utts, masked)}
    new_utts = tuple(u if not p else dataclasses.replace(u, text=text, words=tuple(
        dataclasses.replace(w, word=mask_digits(w.word)) for w in u.words)) for u, (text, p) in zip(utts, masked))
    changes: dict = {"utterances": new_utts}
    if rec.error_detail:
        changes["error_detail"] = mask_text(rec.error_detail)[0]
    score = rec.score
    if score is not None:
        items = tuple(dataclasses.replace(item, evidence=tuple(
            dataclasses.replace(h, text=mask_quote(h.text, pieces.get(h.turn_index, ()))) if h.text else h
            for h in item.evidence)) for item in score.items)
        changes["score"] = dataclasses.replace(score, items=items)
    summary = rec.summary
    if summary is not None:  # free text written by the summarize stage (an LLM may quote the call)
        changes["summary"] = dataclasses.replace(summary, **{
            k: mask_text(getattr(summary, k))[0] for k in SUMMARY_TEXT_FIELDS if getattr(summary, k)})
    return rec.replace(**changes)
