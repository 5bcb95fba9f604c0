"""Text clean-up shared by ASR and chat: simplified characters, loop and credit guards; jieba's tokenizer."""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Sequence, TypeVar

T = TypeVar("T")


@functools.lru_cache(maxsize=None)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    """Traditional (Taiwan phrasing) → simplified Chinese; other scripts pass unchanged (ASR output)."""
    return _converter("tw2sp").convert(text) if text else text


def to_simplified_chars(text: str) -> str:
    """Traditional characters → simplified, character by character (OpenCC ``t2s``); simplified text is
    unchanged.  For typed chat: :func:`to_simplified`'s Taiwan phrasing would rewrite mainland text."""
    return _converter("t2s").convert(text) if text else text


@functools.lru_cache(maxsize=1)
def jieba_tokenizer():
    """jieba's shared default tokenizer, dictionary loaded and logging quiet (keyword word boundaries and the
    sentiment model's word features both use it, read-only).  Raises ImportError without jieba: callers
    name their install hint."""
    with warnings.catch_warnings():  # jieba 0.42 imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import jieba
    jieba.setLogLevel(logging.WARNING)
    jieba.dt.initialize()
    return jieba.dt


def collapse_loops(items: Sequence[T], key=lambda x: x, max_repeats: int = 4, max_unit: int = 4) -> tuple[list[T], int]:
    """Remove decoding loops: a unit of 1..max_unit items repeated more than ``max_repeats``
    times in a row is kept once.  Returns ``(kept_items, n_removed)``."""
    keys = [str(key(x)).strip() for x in items]
    out_idx: list[int] = []
    i, removed, n = 0, 0, len(items)
    while i < n:
        collapsed = False
        for unit in range(1, max_unit + 1):
            if i + unit * (max_repeats + 1) > n:
                break
            pattern = keys[i:i + unit]
            if not any(pattern):
                continue
            reps = 1
            while keys[i + reps * unit:i + (reps + 1) * unit] == pattern:
                reps += 1
            if reps > max_repeats:
                out_idx.extend(range(i, i + unit))
                removed += (reps - 1) * unit
                i += reps * unit
                collapsed = True
                break
        if not collapsed:
            out_idx.append(i)
            i += 1
    return [items[j] for j in out_idx], removed


def contains_credit(text: str, phrases: Sequence[str]) -> bool:
    squashed = "".join(text.split()).lower()
    return any("".join(p.split()).lower() in squashed for p in phrases)
