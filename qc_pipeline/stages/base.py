"""The stage contract (datatrove-style): one stage list, run by any executor."""

from __future__ import annotations

from abc import ABC, abstractmethod

from qc_pipeline.records import CallRecord


class Stage(ABC):
    """A step applied to one :class:`CallRecord` at a time.

    ``setup()`` loads heavy resources once per worker process (models); ``process()``
    returns a new record and raises :class:`~qc_pipeline.errors.CallError` for a call
    that cannot go on.  Stages never mutate their input record.
    """

    name: str = "stage"
    kinds: tuple[str, ...] = ("audio", "chat")  # record kinds this stage handles; others pass through

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models; called once per worker before the first record."""

    def applies_to(self, record: CallRecord) -> bool:
        return record.ok and record.source.kind in self.kinds

    @abstractmethod
    def process(self, record: CallRecord) -> CallRecord:
        raise NotImplementedError
