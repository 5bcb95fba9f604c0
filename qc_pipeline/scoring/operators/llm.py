"""The ``llm`` scorecard rule operator: a thin adapter from the rule tree to :func:`qc_pipeline.llm.judge.judge`.

    llm:
      criterion: 坐席是否在给出解决方案之前先安抚了客户的情绪
      few_shot:                                  # optional worked examples (user/assistant pairs in the prompt)
        - {dialogue: "[0] 客户：…\\n[1] 坐席：…", answer: yes, turns: [1], quote: "…", reason: "…"}
      fallback: {ref: soothing}                  # optional: used when the LLM is not configured or fails
    role / window / after / before / where       # the scope keys every operator has

Semantics.  The model sees the whole session (chunked when long) and may cite only turns in the rule's scope;
the node matches when the verified answer is ``yes`` and its hits are the cited turns (evidence text
``llm: <quote> | <reason>``).  An empty scope asks nothing and does not match — with ``where`` (or a graded
level after a cheap rule level) this is how a card asks the LLM only where cheap rules are unsure.  No LLM
configured: the node is its ``fallback`` (or does not match), no flag.  LLM configured but it failed (timeout,
server down, budget, malformed answer, quote not in the cited turns): the node is its ``fallback``, and the
session gets the ``llm_error`` flag (the wiring in the score stage reads :attr:`LlmRuntime.errors`).

The score stage puts an :class:`LlmRuntime` on the rule context (``SessionContext.llm``) when ``llm.base_url``
is set and the card has ``llm`` rules, and adds the session flag ``llm_error`` when ``runtime.errors`` is
non-empty.  The judging itself (prompts, chunking, JSON parsing, the verbatim evidence check) lives in
:mod:`qc_pipeline.llm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from qc_pipeline.config import LlmConfig
from qc_pipeline.llm.client import LlmClient, LlmSession, get_client
from qc_pipeline.llm.judge import Verdict, judge
from qc_pipeline.llm.prompts import ANSWERS, FewShot
from qc_pipeline.scoring.operators.base import Node, Outcome


@dataclass
class LlmRuntime:
    """What an ``llm`` node needs at evaluation time, for one session."""

    client: LlmClient
    session: LlmSession
    verdicts: list = field(default_factory=list)    # (rule_id, Verdict) in evaluation order

    @classmethod
    def for_call(cls, cfg: LlmConfig, call_id: str) -> Optional["LlmRuntime"]:
        client = get_client(cfg)
        return None if client is None else cls(client, client.session(call_id))

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(rid, v.error) for rid, v in self.verdicts if not v.ok]


@dataclass(frozen=True)
class LlmRule(Node):
    op = "llm"
    criterion: str = ""
    few_shot: tuple[FewShot, ...] = ()
    fallback: Optional[Node] = None

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra) -> "LlmRule":
        return compile_llm(c, body, key, rule_id, scope)

    def children(self) -> tuple:
        return (self.fallback,) if self.fallback is not None else ()

    def _fallback(self, ctx) -> Outcome:
        return self.fallback.evaluate(ctx) if self.fallback is not None else Outcome(False)

    def _evaluate(self, ctx) -> Outcome:
        cand = self.scope.candidates(ctx)
        if not cand:
            return Outcome(False)
        runtime: Optional[LlmRuntime] = ctx.llm
        if runtime is None:
            return self._fallback(ctx)
        utts = ctx.utterances
        in_scope = [utts[i].turn_index for t in cand for i in t.members]   # every utterance of the turns in scope
        scope_turns = None if len(in_scope) == len(utts) else in_scope
        verdict: Verdict = judge(runtime.client, runtime.session, self.criterion, utts, scope_turns=scope_turns,
                                 few_shot=self.few_shot)
        runtime.verdicts.append((self.rule_id, verdict))
        if not verdict.ok:
            return self._fallback(ctx)
        if verdict.answer != "yes":
            return Outcome(False)
        scoped = set(in_scope)
        pos = {u.turn_index: i for i, u in enumerate(utts) if u.turn_index in scoped}
        note = f"llm: {verdict.quote} | {verdict.reason}".strip()
        hits = tuple(ctx.hit(self.rule_id, pos[t], note) for t in verdict.turns if t in pos)
        return Outcome(bool(hits), hits)


_KEYS = ("criterion", "few_shot", "fallback")
_SHOT_KEYS = ("dialogue", "answer", "turns", "quote", "reason")


def compile_llm(compiler, body, key: str, rule_id: str, scope) -> LlmRule:
    """Compile an ``llm:`` mapping; errors name the dotted key (``compiler``: scoring's rule compiler)."""
    body = compiler.mapping(body, key, _KEYS, required=("criterion",))
    criterion = body["criterion"]
    if not isinstance(criterion, str) or not criterion.strip():
        raise compiler.err(f"{key}.criterion", "expected a non-empty sentence (the QA criterion, in Chinese)")
    shots_raw = body.get("few_shot") or []
    if not isinstance(shots_raw, list):
        raise compiler.err(f"{key}.few_shot", "expected a list of {dialogue, answer, turns, quote, reason}")
    shots = []
    for n, raw in enumerate(shots_raw):
        k = f"{key}.few_shot[{n}]"
        raw = compiler.mapping(raw, k, _SHOT_KEYS, required=("dialogue", "answer"))
        compiler.choice(raw["answer"], f"{k}.answer", ANSWERS)
        turns = raw.get("turns", [])
        if not isinstance(turns, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in turns):
            raise compiler.err(f"{k}.turns", "expected a list of turn numbers")
        for sub in ("dialogue", "quote", "reason"):
            if sub in raw and not isinstance(raw[sub], str):
                raise compiler.err(f"{k}.{sub}", "expected a string")
        if not raw["dialogue"].strip():
            raise compiler.err(f"{k}.dialogue", "expected the example transcript ([0] 客户：… one turn a line)")
        shots.append(FewShot(dialogue=raw["dialogue"].strip(), answer=raw["answer"], turns=tuple(turns),
                             quote=raw.get("quote", ""), reason=raw.get("reason", "")))
    fallback = compiler.compile(body["fallback"], f"{key}.fallback", rule_id) if "fallback" in body else None
    return LlmRule(rule_id=rule_id, scope=scope, criterion=criterion.strip(), few_shot=tuple(shots),
                   fallback=fallback)
