"""Supervision policy, in one place for every engine: which calls a worker holds, when a running call
is overdue, who is charged when a worker dies, and which error row a death or a timeout becomes.

Pure bookkeeping: no processes, no Ray, time comes from an injectable clock, so it is unit-tested on
its own (tests/test_ledger.py).  The local pool keys workers by pid, the Ray engine by actor; both
tell the ledger what they saw (``assign``, ``finished``, ``died``, ``lost``, ``errored``) and act on
the :class:`Verdict` it returns (calls to run again, error rows to write).

Rules:

* A worker runs its tasks in the order they were assigned; the oldest one is *running*, the rest
  are queued (Ray keeps a few calls queued per actor; a local worker holds one task).
* A running task's clock starts when it becomes the worker's oldest task, never earlier, so queued
  calls are not charged for the call ahead of them.  Its limit is ``call_timeout_s`` per call in it.
* When a worker dies, only its running task is charged.  A task of several calls is not charged at
  all (which call was at fault is unknown): each of its calls goes again alone.  A single call that
  was running during ``max_attempts`` deaths becomes a ``worker_crashed`` row; a call killed for
  running past its limit becomes a ``call_timeout`` row, without a retry.  Queued tasks go again as
  they were, uncharged.
"""

from __future__ import annotations

import collections
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional, Sequence

from qc_pipeline.errors import Reason
from qc_pipeline.records import CallRecord, CallSource

Group = tuple[CallSource, ...]


@dataclass
class Task:
    calls: Group
    serial: int
    started: Optional[float] = None  # when it became its worker's running task
    timed_out: bool = False


@dataclass(frozen=True)
class Verdict:
    """What to do after a worker death, a lost result or an escaped error."""

    retry: tuple[Group, ...] = ()          # groups to run again (a charged or split call goes alone)
    failed: tuple[CallRecord, ...] = ()    # error rows to write


@dataclass
class Ledger:
    call_timeout_s: float = 0.0            # 0 = no limit
    max_attempts: int = 2                  # deaths a call may be running at before it is written off
    clock: Callable[[], float] = time.monotonic
    _queues: dict[Hashable, list[Task]] = field(default_factory=dict)
    _deaths: collections.Counter = field(default_factory=collections.Counter)   # call_id -> charged deaths
    _losses: collections.Counter = field(default_factory=collections.Counter)   # call_id -> lost results
    _serial: itertools.count = field(default_factory=itertools.count)

    # -- what the engine saw ---------------------------------------------------------------------
    def assign(self, worker: Hashable, calls: Sequence[CallSource]) -> Task:
        task = Task(tuple(calls), next(self._serial))
        queue = self._queues.setdefault(worker, [])
        queue.append(task)
        if len(queue) == 1:
            task.started = self.clock()
        return task

    def finished(self, worker: Hashable, task: Task) -> None:
        """``task`` came back (with results, or with an error that is not a death)."""
        queue = self._queues.get(worker, [])
        if task in queue:
            queue.remove(task)
        if queue and queue[0].started is None:
            queue[0].started = self.clock()
        if not queue:
            self._queues.pop(worker, None)

    def died(self, worker: Hashable, how: str) -> Verdict:
        """``worker`` is gone with everything it held."""
        queue = self._queues.pop(worker, [])
        if not queue:
            return Verdict()
        running, queued = queue[0], queue[1:]
        retry = [t.calls for t in queued]
        failed: list[CallRecord] = []
        if len(running.calls) > 1:
            retry[:0] = [(c,) for c in running.calls]
        elif running.timed_out:
            failed.append(self._timeout_row(running.calls[0]))
        else:
            call = running.calls[0]
            self._deaths[call.call_id] += 1
            n = self._deaths[call.call_id]
            if n >= self.max_attempts:
                failed.append(CallRecord(source=call).failed(
                    Reason.WORKER_CRASHED, f"the worker died {n} times while on this call (last: {how}); often "
                                           "out of memory — check the file, or raise the memory limit"))
            else:
                retry.insert(0, running.calls)
        return Verdict(tuple(retry), tuple(failed))

    def lost(self, worker: Hashable, task: Task, how: str) -> Verdict:
        """An intermediate result of ``task`` was lost (its node died); the worker that noticed is healthy."""
        self.finished(worker, task)
        retry: list[Group] = []
        failed: list[CallRecord] = []
        for call in task.calls:
            self._losses[call.call_id] += 1
            n = self._losses[call.call_id]
            if n >= self.max_attempts:
                failed.append(CallRecord(source=call).failed(
                    Reason.WORKER_CRASHED, f"this call's intermediate results were lost {n} times "
                                           f"(a node or object store failed; last: {how})"))
        if not failed:
            retry.append(task.calls)
        else:
            lost_ids = {r.call_id for r in failed}
            retry.extend((c,) for c in task.calls if c.call_id not in lost_ids)
        return Verdict(tuple(retry), tuple(failed))

    def errored(self, worker: Hashable, task: Task, detail: str) -> Verdict:
        """An error escaped the worker's stage runner (a bug, not a death): a group goes again call by
        call so the error lands on its call; a single call becomes an ``internal_error`` row."""
        self.finished(worker, task)
        if len(task.calls) > 1:
            return Verdict(retry=tuple((c,) for c in task.calls))
        return Verdict(failed=(CallRecord(source=task.calls[0]).failed(Reason.INTERNAL_ERROR, detail[:500]),))

    # -- deadlines -------------------------------------------------------------------------------
    def _limit(self, task: Task) -> float:
        return self.call_timeout_s * len(task.calls)

    def running(self, worker: Hashable) -> Optional[Task]:
        queue = self._queues.get(worker)
        return queue[0] if queue else None

    def wait_s(self) -> Optional[float]:
        """Seconds until the first running task is overdue; None without a limit or running tasks."""
        if not self.call_timeout_s:
            return None
        ends = [t.started + self._limit(t) for q in self._queues.values() for t in q[:1]
                if t.started is not None and not t.timed_out]
        return max(0.05, min(ends) - self.clock()) if ends else None  # a floor: no busy loop at 0

    def overdue(self) -> list[tuple[Hashable, Task]]:
        """Running tasks past their limit (not yet marked); the engine kills their workers after
        ``mark_timed_out``, or lets them be when they turn out to have just finished."""
        if not self.call_timeout_s:
            return []
        now = self.clock()
        return [(w, q[0]) for w, q in self._queues.items()
                if q and not q[0].timed_out and q[0].started is not None and now - q[0].started >= self._limit(q[0])]

    def mark_timed_out(self, task: Task) -> None:
        task.timed_out = True

    def _timeout_row(self, call: CallSource) -> CallRecord:
        return CallRecord(source=call).failed(
            Reason.CALL_TIMEOUT, f"still running after {self.call_timeout_s:.0f} s (run.call_timeout_s); the "
                                 "worker was killed. Check the file, or raise the limit for very long calls")
