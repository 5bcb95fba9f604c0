"""Compiles rule mappings from the card YAML into nodes; every error names the key path."""

from __future__ import annotations

import re
from typing import Any, Optional

from qc_pipeline.errors import ConfigError
from qc_pipeline.scoring.operators.base import SCOPE_KEYS, WINDOW_KINDS, Node, Scope, Settings
from qc_pipeline.scoring.operators.registry import OPERATOR_NAMES, operator_class


def check_number(value: Any, key: str, lo: float, hi: float, source: Optional[str] = None) -> float:
    """``value`` as a float in [lo, hi], else a :class:`ConfigError` naming ``key`` (rules and the card's own keys)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(key, f"expected a number in [{lo}, {hi}], got {value!r}", source)
    return float(value)


class Compiler:
    """``specs`` are the card's reusable named rules (compiled lazily, cycle-safe); ``ref: ID`` uses one."""

    def __init__(self, named_specs: dict, settings: Optional[Settings] = None, source: Optional[str] = None) -> None:
        self.specs = named_specs
        self.settings = settings if settings is not None else Settings()
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

    def compile(self, spec: Any, key: str, rule_id: str) -> Node:
        if isinstance(spec, str):
            spec = {"ref": spec}
        if not isinstance(spec, dict):
            raise self.err(key, f"a rule must be a mapping with one operator ({', '.join(OPERATOR_NAMES)})")
        ops = [k for k in spec if k in OPERATOR_NAMES]
        others = [k for k in spec if k not in SCOPE_KEYS and k not in OPERATOR_NAMES]
        if len(ops) != 1:
            if others:
                raise self.err(f"{key}.{others[0]}", f"unknown rule operator (known: {', '.join(OPERATOR_NAMES)})")
            raise self.err(key, f"exactly one operator expected, got {ops or 'none'}")
        op = ops[0]
        cls = operator_class(op) if op != "ref" else None
        for k in others:
            if cls is None or k not in cls.extra_keys:
                raise self.err(f"{key}.{k}", f"unknown rule operator or key of {op!r} "
                                             f"(operators: {', '.join(OPERATOR_NAMES)})")
        scope = self.scope(spec, key, rule_id)
        if cls is None:
            if not isinstance(spec[op], str):
                raise self.err(f"{key}.ref", "expected a rule id")
            target = self.named(spec[op], f"{key}.ref")
            return target if scope == Scope() else target.rescope(scope)
        return cls.parse(spec[op], self, f"{key}.{op}", rule_id, scope, **{k: spec[k] for k in others})

    def scope(self, spec: dict, key: str, rule_id: str) -> Scope:
        role = self.role(spec.get("role", "any"), f"{key}.role")
        window = None
        if "window" in spec:
            w = spec["window"]
            if not isinstance(w, dict) or len(w) != 1 or next(iter(w)) not in WINDOW_KINDS:
                raise self.err(f"{key}.window", f"expected one of {', '.join(WINDOW_KINDS)}: N")
            kind, value = next(iter(w.items()))
            window = (kind, self.number(value, f"{key}.window.{kind}", 0, 1e6))
        nodes = {k: self.compile(spec[k], f"{key}.{k}", rule_id) for k in ("after", "before", "where", "unless")
                 if k in spec}
        return Scope(role=role, window=window, **nodes)

    # -- helpers for operators' parse()
    def mapping(self, body: Any, k: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(body, dict):
            raise self.err(k, f"expected a mapping with keys {', '.join(allowed)}")
        for key in body:
            if key not in allowed:
                raise self.err(f"{k}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in body:
                raise self.err(f"{k}.{key}", "is required")
        return body

    def strings(self, value: Any, k: str) -> tuple[str, ...]:
        # bare numbers such as 12315 are accepted as keywords (YAML reads them as int)
        ok = isinstance(value, list) and value and all(
            (isinstance(x, str) and x.strip()) or (isinstance(x, int) and not isinstance(x, bool)) for x in value)
        if not ok:
            raise self.err(k, "expected a non-empty list of non-empty strings")
        return tuple(str(x) for x in value)

    def number(self, value: Any, k: str, lo: float, hi: float) -> float:
        return check_number(value, k, lo, hi, self.source)

    def boolean(self, value: Any, k: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(k, "expected true/false")
        return value

    def role(self, value: Any, k: str) -> str:
        """Whose turns: agent, customer or any (a rule's scope, an item's role)."""
        if value not in ("agent", "customer", "any"):
            raise self.err(k, f"must be agent, customer or any; got {value!r}")
        return value

    def choice(self, value: Any, k: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.err(k, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def regex(self, value: Any, k: str) -> str:
        """A regular expression, or a list of them (any may match; nested lists from YAML anchors are
        flattened)."""
        if isinstance(value, list):
            flat, stack = [], list(reversed(value))
            while stack:
                v = stack.pop()
                if isinstance(v, list):
                    stack.extend(reversed(v))
                else:
                    flat.append(v)
            if flat and all(isinstance(v, str) for v in flat):
                value = "|".join(f"(?:{v})" for v in flat)
        if not isinstance(value, str):
            raise self.err(k, "expected a regular expression (or a list of them)")
        try:
            re.compile(value)
        except re.error as exc:
            raise self.err(k, f"invalid regular expression: {exc}") from None
        return value
