"""Words, not substrings: jieba word boundaries, homophone clashes and negation for keyword rules.

* :func:`word_bounds` — the offsets where words begin/end in normalized text (jieba's default
  dictionary, no HMM guessing, so the result is stable).  A keyword matched on words must start
  and end on such offsets: 滚 is not found inside 滚动/滚屏/翻滚, 妈的 not inside 妈妈的, 保证
  not inside 保证金.  A card's ``settings.lexicon`` lists extra words (product names, 工单 …):
  their occurrences are kept whole, whatever the dictionary says.
* :func:`homophone_clash` — a common dictionary word that sounds exactly like (a word of) a keyword:
  客服/克服, 核实/合适, 祝您/助您.  Pinyin fuzz for such keywords would turn ordinary text into hits.
  The search takes ~0.5 s for the default card, paid by every worker at start-up, so its answers are
  kept in the per-machine cache (:mod:`qc_pipeline.cache`), in a file named by the jieba and pypinyin
  versions; :func:`save_clashes` writes what a card's parse added.
* :func:`negated` — a negation cue earlier in the same clause (没办法跟您保证).

jieba's shared tokenizer (:func:`qc_pipeline.textnorm.jieba_tokenizer`) is used read-only (the sentiment model
relies on its default dictionary).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Optional

from qc_pipeline.errors import SetupError
from qc_pipeline.scoring.textmatch import normalize, syllables
from qc_pipeline.textnorm import jieba_tokenizer

#: Default negation cues and how far (characters) a cue may stand before the keyword, inside one
#: clause; a card can override both (``settings.negation``).
NEGATION_CUES = ("不", "没", "没有", "无法", "没法", "没办法", "没有办法", "不能", "不会", "不敢", "不可能", "不一定",
                 "难以", "别", "未")
NEGATION_MAX_GAP = 8


def _jieba():
    try:
        return jieba_tokenizer()
    except ImportError:
        raise SetupError("word-level keyword matching needs jieba: pip install jieba") from None


def word_bounds(norm: str, lexicon: tuple[str, ...] = ()) -> frozenset[int]:
    """Offsets in ``norm`` (normalized text) where a word starts or ends."""
    bounds, pos = {0}, 0
    for tok in _jieba().cut(norm, HMM=False):
        pos += len(tok)
        bounds.add(pos)
    for word in lexicon:
        start = norm.find(word)
        while start >= 0:
            end = start + len(word)
            bounds.difference_update(range(start + 1, end))
            bounds.update((start, end))
            start = norm.find(word, end)
    return frozenset(bounds)


@functools.lru_cache(maxsize=1)
def _homophones() -> dict[str, tuple[str, ...]]:
    """toneless pinyin -> characters whose usual (first) reading it is."""
    from pypinyin.pinyin_dict import pinyin_dict
    from pypinyin.style._utils import replace_symbol_to_no_symbol as plain

    index: dict[str, list[str]] = {}
    for code, readings in pinyin_dict.items():
        index.setdefault(plain(readings.split(",")[0]), []).append(chr(code))
    return {k: tuple(v) for k, v in index.items()}


log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _clash_store() -> tuple[Optional[Path], dict[str, Optional[str]], set[str]]:
    """(cache file, its answers, keys added since it was read)."""
    try:
        from importlib.metadata import version

        tag = f"jieba {version('jieba')} pypinyin {version('pypinyin')}"
        from qc_pipeline.cache import cache_root

        path = cache_root() / f"homophones-{hashlib.sha256(tag.encode()).hexdigest()[:16]}.json"
    except Exception as e:  # noqa: BLE001  (no metadata: compute every time)
        log.debug("homophone cache off: %s", e)
        return None, {}, set()
    try:
        answers = json.loads(path.read_text("utf-8"))
        if not isinstance(answers, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        answers = {}
    except (OSError, ValueError) as e:
        log.warning("ignoring the homophone cache %s (%s)", path, e)
        answers = {}
    return path, answers, set()


def homophone_clash(keyword: str, min_freq: int) -> Optional[str]:
    """A dictionary word with frequency >= ``min_freq`` that is written differently from a word of
    ``keyword`` but reads the same (toneless pinyin, as fuzzy matching reads it), or None."""
    _path, answers, added = _clash_store()
    key = f"{min_freq}\t{keyword}"
    if key not in answers:
        answers[key] = _search_clash(keyword, min_freq)
        added.add(key)
    return answers[key]


def save_clashes() -> None:
    """Write the answers found since the cache file was read (atomically; a failure only logs)."""
    path, answers, added = _clash_store()
    if path is None or not added:
        return
    from qc_pipeline.cache import CacheUnwritable, cache_folder, write_atomic

    try:
        cache_folder(path.parent)
        try:  # answers other workers wrote meanwhile are kept
            answers = {**json.loads(path.read_text("utf-8")), **answers}
        except (OSError, ValueError):
            pass
        text = json.dumps(answers, ensure_ascii=False, sort_keys=True)
        write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        added.clear()
    except (OSError, CacheUnwritable) as e:
        log.info("homophone answers not cached (%s)", e)


def _search_clash(keyword: str, min_freq: int) -> Optional[str]:
    freq = _jieba().FREQ
    homophones = _homophones()
    for word in _jieba().cut(normalize(keyword), HMM=False):
        if len(word) < 2:
            continue
        reading = syllables(word, "pinyin")
        options = [homophones.get(syl, ()) + (c,) for syl, c in zip(reading, word)]
        stack = [""]
        while stack:  # depth-first over homophone spellings; jieba's FREQ holds every word prefix
            prefix = stack.pop()
            if len(prefix) == len(word):
                if prefix != word and freq.get(prefix, 0) >= min_freq and syllables(prefix, "pinyin") == reading:
                    return prefix
                continue
            stack.extend(p for p in (prefix + c for c in options[len(prefix)]) if p in freq)
    return None


def negated(norm: str, pos: int, breaks: frozenset[int], bounds: frozenset[int], cues: tuple[str, ...],
            max_gap: int) -> bool:
    """A negation cue, as whole words, ends at most ``max_gap`` characters before ``pos`` with no
    clause break in between (没办法跟您保证; not 不用担心，我保证 and not 非常 …)."""
    clause_start = max(b for b in breaks if b <= pos)
    for cue in cues:
        at = norm.find(cue, clause_start, pos)
        while at >= 0:
            end = at + len(cue)
            if pos - end <= max_gap and at in bounds and end in bounds:
                return True
            at = norm.find(cue, at + 1, pos)
    return False
