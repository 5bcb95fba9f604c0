"""CLI sub-commands of the QA review app: ``serve``, ``export``, ``report``, ``users``."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Register the review-app sub-commands on the main parser's subparsers."""
