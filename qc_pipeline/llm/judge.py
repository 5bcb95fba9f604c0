"""Ask a plain-language QA criterion about one session and keep only answers whose evidence is really there.

The model must answer JSON ``{"answer": yes|no|not_applicable, "turns": [...], "quote": "...", "reason": "..."}``.
An answer is rejected (an error verdict the caller turns into ``llm_error`` + its rule fallback) when the text
is not that JSON, when its quote is not found verbatim (ignoring whitespace and full/half-width forms) in the
turns it cites, or when a ``yes`` cites no turn inside the rule's scope.

Long sessions go in chunks of whole turns: the first chunk with a verified ``yes`` decides (later chunks are
not asked); otherwise any failed chunk makes the verdict an error (a ``no`` for the whole call is claimed only
when every chunk was read), then ``no`` if any chunk said no, else ``not_applicable``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Optional, Sequence

from qc_pipeline.llm import client as C
from qc_pipeline.llm.prompts import ANSWERS, Chunk, FewShot, chunk_transcript, judge_messages
from qc_pipeline.records import Utterance

_ALIASES = {"是": "yes", "满足": "yes", "true": "yes", "否": "no", "不满足": "no", "false": "no",
            "不适用": "not_applicable", "n/a": "not_applicable", "na": "not_applicable", "not applicable": "not_applicable"}


@dataclass(frozen=True)
class Verdict:
    answer: Optional[str] = None          # yes | no | not_applicable; None when error is set
    turns: tuple[int, ...] = ()
    quote: str = ""
    reason: str = ""
    error: Optional[str] = None           # qc_pipeline.llm.client error code
    detail: str = ""
    requests: int = 0                     # chunks asked (cache hits included)
    quote_checked: int = 0                # answers that carried a quote
    quote_found: int = 0                  # ... whose quote was found verbatim in the cited turns

    @property
    def ok(self) -> bool:
        return self.error is None


def _norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def parse_json_object(text: str) -> Optional[dict]:
    """The first JSON object in a model's text (tolerates ```json fences and chatter around it)."""
    text = re.sub(r"```(?:json)?", "", text or "")
    start = text.find("{")
    while start >= 0:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                esc = (ch == "\\") and not esc
                if ch == '"' and not esc:
                    in_str = False
                continue
            if ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[start:i + 1])
                    except ValueError:
                        break
                    return obj if isinstance(obj, dict) else None
        start = text.find("{", start + 1)
    return None


def _turn_list(value) -> Optional[tuple[int, ...]]:
    values = value if isinstance(value, list) else [value] if value not in (None, "") else []
    out = []
    for v in values:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            out.append(v)
        elif isinstance(v, str) and v.strip().strip("[]第轮").isdigit():
            out.append(int(v.strip().strip("[]第轮")))
        else:
            return None
    return tuple(dict.fromkeys(out))


def check_answer(text: str, utterances: Sequence[Utterance], scope_turns: Optional[set[int]] = None) -> Verdict:
    """Parse one model answer and verify its evidence against the transcript."""
    obj = parse_json_object(text)
    if obj is None:
        return Verdict(error=C.BAD_ANSWER, detail=f"no JSON object in answer: {text[:80]!r}")
    answer = str(obj.get("answer", "")).strip().lower()
    answer = _ALIASES.get(answer, answer)
    turns = _turn_list(obj.get("turns", []))
    quote = obj.get("quote") or ""
    reason = obj.get("reason") or ""
    if answer not in ANSWERS or turns is None or not isinstance(quote, str) or not isinstance(reason, str):
        return Verdict(error=C.BAD_ANSWER, detail=f"answer does not follow the format: {json.dumps(obj, ensure_ascii=False)[:120]}")
    by_turn = {u.turn_index: u.text for u in utterances}
    quote = quote.strip()
    if not quote:
        if answer == "yes":
            return Verdict(error=C.NO_EVIDENCE, detail="answer yes without a quote", turns=turns, reason=reason)
        return Verdict(answer=answer, turns=turns, reason=reason)
    q = _norm(quote)
    found = [t for t in turns if t in by_turn and q and q in _norm(by_turn[t])]
    if not found:
        return Verdict(error=C.NO_EVIDENCE, detail=f"quote {quote[:40]!r} not found in turns {list(turns)}",
                       turns=turns, quote=quote, reason=reason, quote_checked=1)
    if answer == "yes" and scope_turns is not None and not set(found) & scope_turns:
        return Verdict(error=C.OUT_OF_SCOPE, detail=f"cited turns {found} are outside the rule's scope",
                       turns=turns, quote=quote, reason=reason, quote_checked=1, quote_found=1)
    return Verdict(answer=answer, turns=tuple(found), quote=quote, reason=reason, quote_checked=1, quote_found=1)


def judge(client: C.LlmClient, session: Optional[C.LlmSession], criterion: str, utterances: Sequence[Utterance],
          *, scope_turns: Optional[Sequence[int]] = None, few_shot: Sequence[FewShot] = ()) -> Verdict:
    """Ask ``criterion`` about the session.  ``scope_turns``: the turns that may serve as evidence (the rule's
    scope; the whole transcript is still shown as context).  Never raises."""
    scope = set(scope_turns) if scope_turns is not None else None
    chunks: list[Chunk] = chunk_transcript(utterances, client.cfg.max_prompt_chars)
    if scope is not None:
        chunks = [c for c in chunks if scope & set(c.turns)]
    if not chunks:
        return Verdict(answer="not_applicable", reason="no turn in scope")
    if session is not None and session.budget.left < len(chunks):
        # every chunk must be affordable: a verdict on part of the call would be a silent cut
        return Verdict(error=C.BUDGET, detail=f"{len(chunks)} chunks, {session.budget.left} requests left")
    results: list[Verdict] = []
    requests = checked = found = 0
    for chunk in chunks:
        shown_turns = set(chunk.turns)
        in_chunk = sorted(scope & shown_turns) if scope is not None else None
        reply = client.chat(judge_messages(criterion, chunk, few_shot, in_chunk), session)
        requests += 1
        if not reply.ok:
            v = Verdict(error=reply.error, detail=reply.detail)
        else:
            shown = [u for u in utterances if u.turn_index in shown_turns]
            v = check_answer(reply.text, shown, scope)
        checked += v.quote_checked
        found += v.quote_found
        if v.ok and v.answer == "yes":
            return _with_counts(v, requests, checked, found)
        results.append(v)
    failed = [v for v in results if not v.ok]
    if failed:
        return _with_counts(failed[0], requests, checked, found)
    no = [v for v in results if v.answer == "no"]
    return _with_counts(no[0] if no else results[0], requests, checked, found)


def _with_counts(v: Verdict, requests: int, checked: int, found: int) -> Verdict:
    return replace(v, requests=requests, quote_checked=checked, quote_found=found)
