"""Rule operators, compiled from YAML into nodes that return hits with evidence.

A rule node is a mapping with exactly one operator key plus optional scope keys.

Operators
  keyword:   {any|all|none: [words], at_least: N, fuzzy: exact|pinyin|pinyin_loose}
  regex:     {pattern: "...", exclude: "..."}            exclude is tested on the same utterance
  semantic:  {examples: [...], threshold: 0.9}            sentence-embedding cosine (multilingual-e5)
  restates:  {source: NODE, min_similarity: 0.3, method: lexical|semantic}
             a turn that repeats an earlier turn found by ``source`` (need confirmation); lexical =
             share of the source's pinyin bigrams repeated (>= 3 shared), semantic = e5 cosine
  pii:       {kinds: [phone, id_card, bank_card]}        numbers read out, incl. Chinese digits
  emotion:   {below: 40} | {above: 60}                    utterance emotion index (0 upset .. 100 calm/positive)
  unanswered:{trigger: NODE, response: NODE, within: 2}   triggers with no response in the next N turns
  silence:   {over_s: 8}                                  gaps between turns (audio only)
  overtalk:  {over_s: 1.5}                                overlapping turns of both roles (audio only)
  speech_rate: {over: 6.0 | under: 1.5}                   characters per second in a turn (audio only)
  all / any: [NODE, ...]     (all: also ``same_turn: true`` to require one turn matching every child)
  not:       NODE
  ref:       RULE_ID                                      a named rule from the card's ``rules``
Scope keys (any node):
  role: agent|customer|any
  window: {first_turns|last_turns: N} | {first_s|last_s: S} | {first_pct|last_pct: P}
  after: NODE / before: NODE     only turns after / before the first hit of NODE
  where: NODE                    only turns where NODE hits (e.g. run a costly semantic check on cue turns only)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from qc_pipeline.errors import ConfigError
from qc_pipeline.scoring.context import Hit, SessionContext
from qc_pipeline.scoring.pii import find_pii
from qc_pipeline.scoring.textmatch import MODES, coverage, find, normalize


@dataclass(frozen=True)
class Outcome:
    matched: bool
    hits: tuple[Hit, ...] = ()


# ------------------------------------------------------------------ scope
@dataclass(frozen=True)
class Scope:
    role: str = "any"
    window: Optional[tuple[str, float]] = None
    after: Optional["Node"] = None
    before: Optional["Node"] = None
    where: Optional["Node"] = None

    def candidates(self, ctx: SessionContext) -> list[int]:
        idx = [i for i, u in enumerate(ctx.utterances) if self.role == "any" or u.role == self.role]
        if self.window:
            kind, value = self.window
            idx = _apply_window(ctx, idx, kind, value)
        if self.after is not None:
            first = _first_turn(self.after.evaluate(ctx))
            idx = [] if first is None else [i for i in idx if ctx.utterances[i].turn_index > first]
        if self.before is not None:
            first = _first_turn(self.before.evaluate(ctx))
            if first is not None:
                idx = [i for i in idx if ctx.utterances[i].turn_index < first]
        if self.where is not None:
            out = self.where.evaluate(ctx)
            turns = {h.turn_index for h in out.hits} if out.matched else set()
            idx = [i for i in idx if ctx.utterances[i].turn_index in turns]
        return idx


def _first_turn(outcome: Outcome) -> Optional[int]:
    return min((h.turn_index for h in outcome.hits), default=None) if outcome.matched else None


def _apply_window(ctx: SessionContext, idx: list[int], kind: str, value: float) -> list[int]:
    if kind == "first_turns":
        return idx[: int(value)]
    if kind == "last_turns":
        return idx[-int(value):] if value >= 1 else []
    utts = ctx.utterances
    timed = all(utts[i].start is not None for i in idx) and idx
    if kind in ("first_s", "last_s"):
        if not timed:  # chat without times: fall back to ~1 turn per 5 s
            n = max(1, int(value // 5))
            return idx[:n] if kind == "first_s" else idx[-n:]
        if kind == "first_s":
            return [i for i in idx if utts[i].start <= value]
        end = ctx.duration_s or max(utts[i].end or 0 for i in idx)
        return [i for i in idx if (utts[i].end or 0) >= end - value]
    n_all = len(utts)
    cut = max(1, int(round(n_all * value / 100)))
    if kind == "first_pct":
        return [i for i in idx if i < cut]
    return [i for i in idx if i >= n_all - cut]


# ------------------------------------------------------------------ nodes
@dataclass(frozen=True)
class Node:
    rule_id: str
    scope: Scope = field(default_factory=Scope)

    def evaluate(self, ctx: SessionContext) -> Outcome:
        key = ("node", id(self))
        if key not in ctx._cache:
            ctx._cache[key] = self._evaluate(ctx)
        return ctx._cache[key]

    def _evaluate(self, ctx: SessionContext) -> Outcome:
        raise NotImplementedError


@dataclass(frozen=True)
class Keyword(Node):
    words: tuple[str, ...] = ()
    mode: str = "any"           # any | all | none | at_least
    n: int = 1
    fuzzy: str = "exact"

    def _evaluate(self, ctx):
        norm_words = [normalize(w) for w in self.words]
        hits, found = [], set()
        for i in self.scope.candidates(ctx):
            text = ctx.norm[i]
            matched = [w for w, nw in zip(self.words, norm_words) if find(nw, text, self.fuzzy) >= 0]
            if matched:
                found.update(matched)
                hits.append(ctx.hit(self.rule_id, i, "、".join(matched) + " | " + ctx.utterances[i].text))
        if self.mode == "none":
            return Outcome(not hits, tuple(hits))
        if self.mode == "all":
            return Outcome(len(found) == len(self.words), tuple(hits))
        if self.mode == "at_least":
            return Outcome(len(found) >= self.n, tuple(hits))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Regex(Node):
    pattern: str = ""
    exclude: Optional[str] = None

    def _evaluate(self, ctx):
        pat, exc = re.compile(self.pattern), re.compile(self.exclude) if self.exclude else None
        hits = []
        for i in self.scope.candidates(ctx):
            text = ctx.utterances[i].text
            m = pat.search(text)
            if m and not (exc and exc.search(text)):
                hits.append(ctx.hit(self.rule_id, i, m.group() + " | " + text))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Semantic(Node):
    examples: tuple[str, ...] = ()
    threshold: float = 0.9

    def _evaluate(self, ctx):
        if ctx.embed is None:
            return Outcome(False)
        key = ("examples", self.examples)
        if key not in ctx._cache:
            ctx._cache[key] = np.asarray(ctx.embed(list(self.examples)))
        ex = ctx._cache[key]
        hits = []
        for i in self.scope.candidates(ctx):
            sim = float(np.max(ex @ ctx.embedding(i)))
            if sim >= self.threshold:
                hits.append(ctx.hit(self.rule_id, i, f"sim={sim:.2f} | {ctx.utterances[i].text}"))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Restates(Node):
    source: Optional[Node] = None
    min_similarity: float = 0.5
    method: str = "lexical"

    def _evaluate(self, ctx):
        src = self.source.evaluate(ctx)
        if not src.matched:
            return Outcome(False)
        hits = []
        for i in self.scope.candidates(ctx):
            u = ctx.utterances[i]
            earlier = [h for h in src.hits if h.turn_index < u.turn_index]
            best = 0.0
            for h in earlier:
                j = _index_of(ctx, h.turn_index)
                if self.method == "semantic" and ctx.embed is not None:
                    sim = float(ctx.embedding(i) @ ctx.embedding(j))
                else:
                    sim = coverage(ctx.utterances[j].text, u.text)
                best = max(best, sim)
            if best >= self.min_similarity:
                hits.append(ctx.hit(self.rule_id, i, f"sim={best:.2f} | {u.text}"))
        return Outcome(bool(hits), tuple(hits))


def _index_of(ctx: SessionContext, turn_index: int) -> int:
    for i, u in enumerate(ctx.utterances):
        if u.turn_index == turn_index:
            return i
    raise KeyError(turn_index)


@dataclass(frozen=True)
class Pii(Node):
    kinds: tuple[str, ...] = ("phone", "id_card", "bank_card")

    def _evaluate(self, ctx):
        hits = []
        for i in self.scope.candidates(ctx):
            found = [h for h in find_pii(ctx.utterances[i].text) if h.kind in self.kinds]
            if found:
                hits.append(ctx.hit(self.rule_id, i, ",".join(h.kind for h in found)))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Emotion(Node):
    below: Optional[float] = None
    above: Optional[float] = None

    def _evaluate(self, ctx):
        hits = []
        for i in self.scope.candidates(ctx):
            value = ctx.emotion.get(ctx.utterances[i].turn_index)
            if value is None:
                continue
            if (self.below is not None and value < self.below) or (self.above is not None and value >= self.above):
                hits.append(ctx.hit(self.rule_id, i, f"emotion={value:.0f} | {ctx.utterances[i].text}"))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Unanswered(Node):
    trigger: Optional[Node] = None
    response: Optional[Node] = None
    within: int = 2

    def _evaluate(self, ctx):
        trig = self.trigger.evaluate(ctx)
        resp_turns = sorted({h.turn_index for h in self.response.evaluate(ctx).hits})
        hits = []
        for h in trig.hits:
            # the next `within` turns of the other role(s)
            later = [u.turn_index for u in ctx.utterances if u.turn_index > h.turn_index and u.role != h.role]
            window = set(later[: self.within])
            if not window & set(resp_turns):
                hits.append(Hit(self.rule_id, h.turn_index, h.role, h.start, h.end, h.text))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Silence(Node):
    over_s: float = 8.0

    def _evaluate(self, ctx):
        utts = [u for u in ctx.utterances if u.start is not None]
        hits = []
        for a, b in zip(utts, utts[1:]):
            gap = b.start - max(x.end for x in utts if x.turn_index <= a.turn_index)
            if gap > self.over_s:
                hits.append(Hit(self.rule_id, b.turn_index, b.role, a.end, b.start, f"silence {gap:.1f}s"))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class Overtalk(Node):
    over_s: float = 1.5

    def _evaluate(self, ctx):
        utts = [u for u in ctx.utterances if u.start is not None]
        hits = []
        for i, a in enumerate(utts):
            for b in utts[i + 1:]:
                if b.start >= a.end:
                    break
                if a.role != b.role:
                    overlap = min(a.end, b.end) - b.start
                    if overlap > self.over_s and (self.scope.role in ("any", b.role)):
                        hits.append(Hit(self.rule_id, b.turn_index, b.role, b.start, min(a.end, b.end),
                                        f"overtalk {overlap:.1f}s | {b.text}"))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class SpeechRate(Node):
    over: Optional[float] = None
    under: Optional[float] = None
    min_turn_s: float = 2.0

    def _evaluate(self, ctx):
        hits = []
        for i in self.scope.candidates(ctx):
            u = ctx.utterances[i]
            if u.start is None or u.end is None or u.end - u.start < self.min_turn_s:
                continue
            rate = len(ctx.norm[i]) / (u.end - u.start)
            if (self.over is not None and rate > self.over) or (self.under is not None and rate < self.under):
                hits.append(ctx.hit(self.rule_id, i, f"{rate:.1f} chars/s | {u.text}"))
        return Outcome(bool(hits), tuple(hits))


@dataclass(frozen=True)
class AllOf(Node):
    children: tuple[Node, ...] = ()
    same_turn: bool = False

    def _evaluate(self, ctx):
        outs = [c.evaluate(ctx) for c in self.children]
        if not all(o.matched for o in outs):
            return Outcome(False)
        if self.same_turn:
            common = set.intersection(*({h.turn_index for h in o.hits} for o in outs))
            hits = tuple(h for h in outs[0].hits if h.turn_index in common)
            return Outcome(bool(common), hits)
        return Outcome(True, tuple(h for o in outs for h in o.hits))


@dataclass(frozen=True)
class AnyOf(Node):
    children: tuple[Node, ...] = ()

    def _evaluate(self, ctx):
        outs = [c.evaluate(ctx) for c in self.children]
        return Outcome(any(o.matched for o in outs), tuple(h for o in outs if o.matched for h in o.hits))


@dataclass(frozen=True)
class Not(Node):
    child: Optional[Node] = None

    def _evaluate(self, ctx):
        out = self.child.evaluate(ctx)
        return Outcome(not out.matched, ())


# ------------------------------------------------------------------ compiler
_SCOPE_KEYS = ("role", "window", "after", "before", "where")
_WINDOW_KINDS = ("first_turns", "last_turns", "first_s", "last_s", "first_pct", "last_pct")
OPERATORS = ("keyword", "regex", "semantic", "restates", "pii", "emotion", "unanswered", "silence", "overtalk",
             "speech_rate", "all", "any", "not", "ref")


class RuleCompiler:
    """Compiles rule mappings; ``named`` holds the card's reusable rules (compiled lazily, cycle-safe)."""

    def __init__(self, named_specs: dict, source: Optional[str] = None) -> None:
        self.specs = named_specs
        self.source = source
        self.compiled: dict[str, Node] = {}
        self._stack: list[str] = []

    def err(self, key: str, msg: str) -> ConfigError:
        return ConfigError(key, msg, self.source)

    def named(self, rule_id: str, key: str) -> Node:
        if rule_id in self.compiled:
            return self.compiled[rule_id]
        if rule_id not in self.specs:
            raise self.err(key, f"unknown rule {rule_id!r} (defined rules: {', '.join(sorted(self.specs)) or 'none'})")
        if rule_id in self._stack:
            raise self.err(key, f"rule {rule_id!r} refers to itself ({' -> '.join(self._stack + [rule_id])})")
        self._stack.append(rule_id)
        node = self.compile(self.specs[rule_id], f"rules.{rule_id}", rule_id)
        self._stack.pop()
        self.compiled[rule_id] = node
        return node

    def compile(self, spec, key: str, rule_id: str) -> Node:
        if isinstance(spec, str):
            spec = {"ref": spec}
        if not isinstance(spec, dict):
            raise self.err(key, f"a rule must be a mapping with one operator ({', '.join(OPERATORS)})")
        ops = [k for k in spec if k not in _SCOPE_KEYS and k not in ("same_turn",)]
        unknown = [k for k in ops if k not in OPERATORS]
        if unknown:
            raise self.err(f"{key}.{unknown[0]}", f"unknown rule operator (known: {', '.join(OPERATORS)})")
        if len(ops) != 1:
            raise self.err(key, f"exactly one operator expected, got {ops or 'none'}")
        op = ops[0]
        scope = self._scope(spec, key, rule_id)
        body = spec[op]
        k = f"{key}.{op}"
        if op == "ref":
            if not isinstance(body, str):
                raise self.err(k, "expected a rule id")
            target = self.named(body, k)
            if scope == Scope():
                return target
            return _rescope(target, scope)
        if op == "keyword":
            return self._keyword(body, k, rule_id, scope)
        if op == "regex":
            body = self._mapping(body, k, ("pattern", "exclude"), required=("pattern",))
            for sub in ("pattern", "exclude"):
                if body.get(sub) is not None:
                    try:
                        re.compile(body[sub])
                    except re.error as exc:
                        raise self.err(f"{k}.{sub}", f"invalid regular expression: {exc}") from None
            return Regex(rule_id=rule_id, scope=scope, pattern=body["pattern"], exclude=body.get("exclude"))
        if op == "semantic":
            body = self._mapping(body, k, ("examples", "threshold"), required=("examples",))
            return Semantic(rule_id=rule_id, scope=scope, examples=self._strings(body["examples"], f"{k}.examples"),
                            threshold=self._number(body.get("threshold", 0.9), f"{k}.threshold", 0, 1))
        if op == "restates":
            body = self._mapping(body, k, ("source", "min_similarity", "method"), required=("source",))
            method = body.get("method", "lexical")
            if method not in ("lexical", "semantic"):
                raise self.err(f"{k}.method", "must be lexical or semantic")
            return Restates(rule_id=rule_id, scope=scope, source=self.compile(body["source"], f"{k}.source", rule_id),
                            min_similarity=self._number(body.get("min_similarity", 0.5), f"{k}.min_similarity", 0, 1),
                            method=method)
        if op == "pii":
            body = self._mapping(body or {}, k, ("kinds",))
            kinds = self._strings(body.get("kinds", ["phone", "id_card", "bank_card"]), f"{k}.kinds")
            bad = [x for x in kinds if x not in ("phone", "id_card", "bank_card")]
            if bad:
                raise self.err(f"{k}.kinds", f"unknown kind {bad[0]!r} (phone, id_card, bank_card)")
            return Pii(rule_id=rule_id, scope=scope, kinds=kinds)
        if op == "emotion":
            body = self._mapping(body, k, ("below", "above"))
            if ("below" in body) == ("above" in body):
                raise self.err(k, "needs exactly one of below / above (emotion index 0..100)")
            return Emotion(rule_id=rule_id, scope=scope,
                           below=self._number(body["below"], f"{k}.below", 0, 100) if "below" in body else None,
                           above=self._number(body["above"], f"{k}.above", 0, 100) if "above" in body else None)
        if op == "unanswered":
            body = self._mapping(body, k, ("trigger", "response", "within"), required=("trigger", "response"))
            return Unanswered(rule_id=rule_id, scope=scope,
                              trigger=self.compile(body["trigger"], f"{k}.trigger", rule_id),
                              response=self.compile(body["response"], f"{k}.response", rule_id),
                              within=int(self._number(body.get("within", 2), f"{k}.within", 1, 50)))
        if op in ("silence", "overtalk"):
            body = self._mapping(body, k, ("over_s",), required=("over_s",))
            cls = Silence if op == "silence" else Overtalk
            return cls(rule_id=rule_id, scope=scope, over_s=self._number(body["over_s"], f"{k}.over_s", 0, 3600))
        if op == "speech_rate":
            body = self._mapping(body, k, ("over", "under", "min_turn_s"))
            if "over" not in body and "under" not in body:
                raise self.err(k, "needs 'over' or 'under' (characters per second)")
            return SpeechRate(rule_id=rule_id, scope=scope,
                              over=self._number(body["over"], f"{k}.over", 0, 50) if "over" in body else None,
                              under=self._number(body["under"], f"{k}.under", 0, 50) if "under" in body else None,
                              min_turn_s=self._number(body.get("min_turn_s", 2.0), f"{k}.min_turn_s", 0, 600))
        if op in ("all", "any"):
            if not isinstance(body, list) or not body:
                raise self.err(k, "expected a non-empty list of rules")
            children = tuple(self.compile(c, f"{k}[{i}]", rule_id) for i, c in enumerate(body))
            if op == "all":
                same = spec.get("same_turn", False)
                if not isinstance(same, bool):
                    raise self.err(f"{key}.same_turn", "expected true/false")
                node = AllOf(rule_id=rule_id, children=children, same_turn=same)
            else:
                node = AnyOf(rule_id=rule_id, children=children)
            return _rescope(node, scope) if scope != Scope() else node
        if op == "not":
            node = Not(rule_id=rule_id, child=self.compile(body, k, rule_id))
            return _rescope(node, scope) if scope != Scope() else node
        raise AssertionError(op)  # unreachable: operators validated above

    # -- helpers
    def _scope(self, spec: dict, key: str, rule_id: str) -> Scope:
        role = spec.get("role", "any")
        if role not in ("agent", "customer", "any"):
            raise self.err(f"{key}.role", f"must be agent, customer or any; got {role!r}")
        window = None
        if "window" in spec:
            w = spec["window"]
            if not isinstance(w, dict) or len(w) != 1 or next(iter(w)) not in _WINDOW_KINDS:
                raise self.err(f"{key}.window", f"expected one of {', '.join(_WINDOW_KINDS)}: N")
            kind, value = next(iter(w.items()))
            window = (kind, self._number(value, f"{key}.window.{kind}", 0, 1e6))
        after = self.compile(spec["after"], f"{key}.after", rule_id) if "after" in spec else None
        before = self.compile(spec["before"], f"{key}.before", rule_id) if "before" in spec else None
        where = self.compile(spec["where"], f"{key}.where", rule_id) if "where" in spec else None
        return Scope(role=role, window=window, after=after, before=before, where=where)

    def _keyword(self, body, k, rule_id, scope) -> Keyword:
        if isinstance(body, list):
            body = {"any": body}
        body = self._mapping(body, k, ("any", "all", "none", "at_least", "n", "fuzzy"))
        modes = [m for m in ("any", "all", "none", "at_least") if m in body]
        if len(modes) != 1:
            raise self.err(k, "use exactly one of any / all / none / at_least (with n)")
        mode = modes[0]
        words = self._strings(body[mode], f"{k}.{mode}")
        fuzzy = body.get("fuzzy", "exact")
        if fuzzy not in MODES:
            raise self.err(f"{k}.fuzzy", f"must be one of {', '.join(MODES)}; got {fuzzy!r}")
        n = int(self._number(body.get("n", 1), f"{k}.n", 1, 1000))
        if mode == "at_least" and n > len(words):
            raise self.err(f"{k}.n", f"n={n} is more than the {len(words)} keywords given")
        return Keyword(rule_id=rule_id, scope=scope, words=words, mode=mode, n=n, fuzzy=fuzzy)

    def _mapping(self, body, k, allowed, required=()) -> dict:
        if not isinstance(body, dict):
            raise self.err(k, f"expected a mapping with keys {', '.join(allowed)}")
        for key in body:
            if key not in allowed:
                raise self.err(f"{k}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in body:
                raise self.err(f"{k}.{key}", "is required")
        return body

    def _strings(self, value, k) -> tuple[str, ...]:
        # bare numbers such as 12315 are accepted as keywords (YAML reads them as int)
        ok = isinstance(value, list) and value and all(
            (isinstance(x, str) and x.strip()) or (isinstance(x, int) and not isinstance(x, bool)) for x in value)
        if not ok:
            raise self.err(k, "expected a non-empty list of non-empty strings")
        return tuple(str(x) for x in value)

    def _number(self, value, k, lo, hi) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self.err(k, f"expected a number in [{lo}, {hi}], got {value!r}")
        return float(value)


def _rescope(node: Node, scope: Scope) -> Node:
    """A named rule used with extra scope keys: same rule, narrower scope (a new node, original untouched).
    On combinators the scope is pushed down to the children."""
    import dataclasses

    if isinstance(node, (AllOf, AnyOf)):
        return dataclasses.replace(node, children=tuple(_rescope(c, scope) for c in node.children))
    if isinstance(node, Not):
        return dataclasses.replace(node, child=_rescope(node.child, scope))
    if isinstance(node, Unanswered):
        return dataclasses.replace(node, trigger=_rescope(node.trigger, scope))
    merged = dataclasses.replace(
        node.scope,
        role=scope.role if scope.role != "any" else node.scope.role,
        window=scope.window or node.scope.window,
        after=scope.after or node.scope.after,
        before=scope.before or node.scope.before,
        where=scope.where or node.scope.where,
    )
    return dataclasses.replace(node, scope=merged)
