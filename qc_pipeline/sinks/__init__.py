"""Where finished records go.  A sink is anything with ``open / committed / add / flush / close``;
``ParquetSink`` (the versioned tables, with the sessions part as commit marker) is the one in use."""

from __future__ import annotations

from typing import Iterable, Protocol

from qc_pipeline.records import CallRecord
from qc_pipeline.sinks.parquet import DEPENDENT_TABLES, Committed, ParquetSink, read_table


class Sink(Protocol):
    def open(self) -> None:
        """Prepare the destination (and repair what an interrupted run left); SetupError when unusable."""

    def committed(self, retry: Iterable[str] = ()) -> Committed:
        """Calls already committed: ``done`` (skip) and ``retry`` (latest result failed with a reason in
        ``retry``: process again), from one read of the destination."""

    def add(self, rec: CallRecord) -> None:
        """Queue one finished (and PII-masked) record; may flush."""

    def flush(self) -> None:
        """Commit everything queued so far."""

    def close(self) -> None:
        """Flush and release."""


__all__ = ["Sink", "Committed", "ParquetSink", "read_table", "DEPENDENT_TABLES"]
