"""``keyword``: words in a turn.

    keyword: [w1, w2]                       same as {any: [...]}
    keyword: {any|all|none|at_least: [...], n: N,
              fuzzy: exact|pinyin|pinyin_loose,   homophone-tolerant, on audio only (ASR errors)
              match: substring|word,              word: the keyword must start and end on word
                                                  boundaries (滚 is not in 滚动, 妈的 not in 妈妈的)
              skip_negated: true,                 an occurrence after a negation cue in the same
                                                  clause does not count (没办法跟您保证)
              skip_after: [请, 需要]}             … nor one after these words (请您保证附件完好 asks
                                                  the customer; it promises nothing)

Fuzzy matches always need word boundaries (故障单 does not contain 账单), and a keyword with a
common homophone (客服/克服, 核实/合适: ``settings.homophone_clash_min_freq``) is matched exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from qc_pipeline.records import KIND_AUDIO
from qc_pipeline.scoring.context import SessionContext, Turn
from qc_pipeline.scoring.operators.base import Node, turn_outcome
from qc_pipeline.scoring.textmatch import MODES, find_all, normalize
from qc_pipeline.scoring.words import homophone_clash, negated

log = logging.getLogger(__name__)
_MODES = ("any", "all", "none", "at_least")


@dataclass(frozen=True)
class Keyword(Node):
    op = "keyword"
    words: tuple[str, ...] = ()
    mode: str = "any"
    n: int = 1
    fuzzy: str = "exact"
    fuzzy_ok: tuple[bool, ...] = ()      # per word: no common homophone, fuzz allowed (on audio)
    norms: tuple[str, ...] = ()          # per word: normalized once, at parse time
    whole_words: bool = False
    lexicon: tuple[str, ...] = ()
    skip_cues: tuple[str, ...] = ()     # negation cues and skip_after words
    skip_max_gap: int = 0

    @classmethod
    def parse(cls, body, c, key, rule_id, scope, **extra):
        if isinstance(body, list):
            body = {"any": body}
        body = c.mapping(body, key, _MODES + ("n", "fuzzy", "match", "skip_negated", "skip_after"))
        modes = [m for m in _MODES if m in body]
        if len(modes) != 1:
            raise c.err(key, "use exactly one of any / all / none / at_least (with n)")
        mode = modes[0]
        words = c.strings(body[mode], f"{key}.{mode}")
        fuzzy = c.choice(body.get("fuzzy", "exact"), f"{key}.fuzzy", MODES)
        n = int(c.number(body.get("n", 1), f"{key}.n", 1, 1000))
        if mode == "at_least" and n > len(words):
            raise c.err(f"{key}.n", f"n={n} is more than the {len(words)} keywords given")
        match = c.choice(body.get("match", "substring"), f"{key}.match", ("substring", "word"))
        s = c.settings
        fuzzy_ok = []
        for w in words:
            clash = homophone_clash(w, s.homophone_clash_min_freq) if fuzzy != "exact" else None
            if clash:
                log.debug("rule %s: %r sounds like the common word %r; matched exactly", rule_id, w, clash)
            fuzzy_ok.append(fuzzy != "exact" and clash is None)
        skip = s.negation_cues if c.boolean(body.get("skip_negated", False), f"{key}.skip_negated") else ()
        if "skip_after" in body:
            skip += tuple(normalize(w) for w in c.strings(body["skip_after"], f"{key}.skip_after"))
        return cls(rule_id=rule_id, scope=scope, words=words, mode=mode, n=n, fuzzy=fuzzy, fuzzy_ok=tuple(fuzzy_ok),
                   norms=tuple(normalize(w) for w in words), whole_words=match == "word", lexicon=s.lexicon, skip_cues=skip, skip_max_gap=s.negation_max_gap)

    def _evaluate(self, ctx: SessionContext):
        fuzz = self.fuzzy if ctx.channel == KIND_AUDIO else "exact"
        targets = [(w, norm, fuzz if ok else "exact") for w, norm, ok in zip(self.words, self.norms, self.fuzzy_ok)]
        cands = self.scope.candidates(ctx)
        hits, found = [], set()
        for t in cands:
            matched = []
            for w, norm, mode in targets:
                pos = self._find(ctx, t, norm, mode)
                if pos is not None:
                    matched.append((pos, w))
            if matched:
                found.update(w for _, w in matched)
                pos = min(matched)[0]
                member = t.member_at(pos)
                hits.append(ctx.hit(self.rule_id, member,
                                    "、".join(w for _, w in matched) + " | " + ctx.utterances[member].text))
        out = turn_outcome(ctx, cands, hits)
        if self.mode == "none":
            return type(out)(not hits, out.hits, out.uncertain)
        if self.mode == "all":
            return type(out)(len(found) == len(self.words), out.hits, out.uncertain)
        if self.mode == "at_least":
            return type(out)(len(found) >= self.n, out.hits, out.uncertain)
        return out

    def _find(self, ctx: SessionContext, t: Turn, word: str, mode: str) -> Optional[int]:
        for pos in find_all(word, t.norm, mode):
            if self.whole_words or not t.norm.startswith(word, pos):  # fuzzy matches need word bounds too
                bounds = ctx.word_bounds(t, self.lexicon)
                if pos not in bounds or pos + len(word) not in bounds:
                    continue
            if self.skip_cues and negated(t.norm, pos, t.breaks, ctx.word_bounds(t, self.lexicon),
                                          self.skip_cues, self.skip_max_gap):
                continue
            return pos
        return None
