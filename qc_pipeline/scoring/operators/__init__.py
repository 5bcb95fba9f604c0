"""Rule operators: one class per operator, registered by name (:mod:`.registry`).

Each class parses its own YAML (``parse``), lists its operand nodes (``children``: what rescoping
and the embedding walk follow), says whether it needs sentence embeddings (``needs_embeddings``)
and evaluates to an :class:`~.base.Outcome` with evidence.  Scope keys are in :mod:`.base`; each
operator's YAML is documented in its module.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from qc_pipeline.scoring.operators.base import Node, Outcome, Scope, Settings
from qc_pipeline.scoring.operators.compiler import Compiler
from qc_pipeline.scoring.operators.registry import OPERATOR_NAMES, OPERATORS, operator_class

__all__ = ["Compiler", "Node", "OPERATORS", "OPERATOR_NAMES", "Outcome", "Scope", "Settings", "operator_class",
           "uses_embeddings", "walk"]


def walk(roots: Iterable[Node]) -> Iterator[Node]:
    """Every node reachable from ``roots``: operands and scope nodes, each once."""
    seen: set[int] = set()
    stack = [n for n in roots if n is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(node.children())
        stack.extend(node.scope.nodes())


def uses_embeddings(roots: Iterable[Node]) -> bool:
    return any(n.needs_embeddings() for n in walk(roots))
