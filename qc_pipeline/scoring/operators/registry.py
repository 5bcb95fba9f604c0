"""Operator name -> class.  Adding an operator is one module in this package plus one line here."""

from __future__ import annotations

import functools
import importlib

# name: "module:Class" inside qc_pipeline.scoring.operators (imported on first use)
OPERATORS = {
    "keyword": "keyword:Keyword",
    "regex": "regex:Regex",
    "question": "dialogue:Question",
    "statement": "dialogue:Statement",
    "semantic": "semantic:Semantic",
    "restates": "restates:Restates",
    "pii": "pii:Pii",
    "emotion": "emotion:Emotion",
    "classifier": "classifier:Classifier",
    "unanswered": "unanswered:Unanswered",
    "reply_to": "reply:ReplyTo",
    "silence": "acoustic:Silence",
    "overtalk": "acoustic:Overtalk",
    "speech_rate": "acoustic:SpeechRate",
    "call": "call:Call",
    "over_duration_target": "call:OverDurationTarget",
    "llm": "llm:LlmRule",
    "all": "combinators:AllOf",
    "any": "combinators:AnyOf",
    "not": "combinators:Not",
    "first": "combinators:First",
    "last": "combinators:Last",
}
OPERATOR_NAMES = tuple(OPERATORS) + ("ref",)   # ref: a named rule of the card (resolved by the compiler)


@functools.lru_cache(maxsize=None)
def operator_class(name: str) -> type:
    module, cls = OPERATORS[name].split(":")
    return getattr(importlib.import_module(f"qc_pipeline.scoring.operators.{module}"), cls)
