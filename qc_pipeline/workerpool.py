"""A small process pool that survives worker deaths.

Each worker is a spawned process with its own pipe and holds at most one call, so when a
worker dies (SIGKILL, the OOM killer, a crash inside a native library) the main process knows
exactly which call it was on.  The dead worker is replaced and its call is retried; a call
that was on a worker during ``MAX_CRASHES`` deaths becomes a ``worker_crashed`` error row, so
one poison file can neither stop the night's batch nor loop forever.  A call still running after
``run.call_timeout_s`` (a decoder livelock on a crafted file, say) has its worker killed and is
written as ``call_timeout`` without a retry.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterable, Iterator, Optional

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import Reason, SetupError
from qc_pipeline.records import CallRecord, CallSource

log = logging.getLogger(__name__)

StageBuilder = Callable[[PipelineConfig], list]   # importable function: cfg -> stage list

MAX_CRASHES = 2          # deaths a call may be present at before it is written as worker_crashed
STOP_TIMEOUT_S = 5.0


# -- worker side ------------------------------------------------------------------------------

def _worker_main(conn: Connection, cfg: PipelineConfig, build: Optional[StageBuilder]) -> None:
    """Load the stages once, then answer each group of ``CallSource`` with ``("done", [CallRecord, ...])``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's business
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cfg.asr.cpu_threads)))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    from qc_pipeline.pipeline import Pipeline, build_stages

    try:
        pipeline = Pipeline((build or build_stages)(cfg))
        pipeline.setup()
    except Exception as exc:  # reported to the main process as a run-level problem
        _send(conn, ("setup_failed", f"{exc.__class__.__name__}: {exc}"))
        return
    _send(conn, ("ready", None))
    while True:
        try:
            group = conn.recv()
        except (EOFError, OSError):  # the main process went away
            return
        if group is None:
            return
        if not _send(conn, ("done", pipeline.run_many(group))):
            return


def _send(conn: Connection, message: tuple) -> bool:
    try:
        conn.send(message)
        return True
    except (BrokenPipeError, EOFError, OSError):
        return False


# -- main side --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection


def describe_exit(exitcode: Optional[int]) -> str:
    """``-9`` → ``"killed by SIGKILL"``; ``1`` → ``"exit code 1"``."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class WorkerPool:
    """Runs ``sources`` on ``n`` worker processes and calls ``on_result`` in the main process."""

    def __init__(self, cfg: PipelineConfig, n: int, on_result: Callable[[CallRecord], None],
                 build: Optional[StageBuilder] = None, group_size: int = 1) -> None:
        self.cfg = cfg
        self.build = build  # None = pipeline.build_stages; must be importable by a spawned process
        self.n = n
        self.on_result = on_result
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._ready: set[int] = set()                          # pids that finished setup
        self.group_size = max(1, group_size)  # calls per task: their ASR windows share batched passes
        self._current: dict[int, tuple[CallSource, ...]] = {}  # pid -> the calls it holds
        self._since: dict[int, float] = {}                     # pid -> when it got that call (monotonic)
        self._timed_out: set[int] = set()                      # pids killed for running over the limit
        self.call_timeout_s = cfg.run.call_timeout_s
        self._crashes: collections.Counter = collections.Counter()  # call_id -> deaths seen
        self._retry: collections.deque = collections.deque()
        self._setup_deaths = 0
        self._undispatched: Optional[int] = None

    # lifecycle
    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self.cfg, self.build), daemon=True, name="qc-worker")
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _stop_all(self) -> None:
        for w in self._workers:
            _send(w.conn, None)
        for w in self._workers:
            w.process.join(STOP_TIMEOUT_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(STOP_TIMEOUT_S)
            w.conn.close()
        self._workers = []

    # main loop
    def run(self, sources: Iterable[CallSource], total: Optional[int] = None) -> None:
        """``total`` (when known) keeps groups small enough that no worker starves at the end of a run."""
        self._undispatched = total
        it = iter(sources)
        self._workers = [self._start() for _ in range(self.n)]
        try:
            exhausted = False
            while True:
                exhausted = self._dispatch(it) or exhausted
                busy = [w for w in self._workers if w.process.pid in self._current]
                if exhausted and not self._retry and not busy:
                    return
                self._wait_once()
        finally:
            self._stop_all()

    def _next(self, it: Iterator[CallSource]) -> Optional[tuple[CallSource, ...]]:
        """A retry (always a single call), else the next group of up to ``group_size`` calls."""
        if self._retry:
            return (self._retry.popleft(),)
        size = self.group_size
        if self._undispatched is not None:  # e.g. 8 calls on 2 workers: 4 + 4, not 8 + 0
            size = max(1, min(size, -(-self._undispatched // self.n)))
        group = tuple(s for s in (next(it, None) for _ in range(size)) if s is not None)
        if self._undispatched is not None:
            self._undispatched -= len(group)
        return group or None

    def _dispatch(self, it: Iterator[CallSource]) -> bool:
        """Hand a call to every ready, idle worker.  True when ``it`` ran dry."""
        for w in self._workers:
            pid = w.process.pid
            if pid not in self._ready or pid in self._current:
                continue
            group = self._next(it)
            if group is None:
                return True
            self._current[pid] = group
            self._since[pid] = time.monotonic()
            _send(w.conn, list(group))  # a failed send shows up as a death on the sentinel
        return False

    def _wait_once(self) -> None:
        handles = {}
        for w in self._workers:
            handles[w.conn] = w
            handles[w.process.sentinel] = w
        ready = wait(list(handles), timeout=self._wait_timeout())
        if not ready:
            self._kill_overdue()
            return
        seen: set[int] = set()
        for handle in ready:
            w = handles[handle]
            if w.process.pid in seen:
                continue
            seen.add(w.process.pid)
            self._service(w)

    def _wait_timeout(self) -> Optional[float]:
        if not self.call_timeout_s or not self._since:
            return None
        deadline = min(t + self._limit(pid) for pid, t in self._since.items())
        return max(0.05, deadline - time.monotonic())

    def _limit(self, pid: int) -> float:
        return self.call_timeout_s * len(self._current.get(pid, ()) or (None,))

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for w in self._workers:
            pid = w.process.pid
            if pid in self._current and now - self._since.get(pid, now) >= self._limit(pid):
                log.warning("call(s) %s still running after %.0f s (run.call_timeout_s); killing worker %d",
                            ", ".join(s.call_id for s in self._current[pid]), self._limit(pid), pid)
                self._timed_out.add(pid)
                w.process.kill()  # its sentinel fires: handled as a death below

    def _service(self, w: _Worker) -> None:
        message = None
        try:
            if w.conn.poll():
                message = w.conn.recv()
        except (EOFError, OSError):
            message = None
        if message is None:
            self._on_death(w)
            return
        kind, payload = message
        if kind == "ready":
            self._ready.add(w.process.pid)
        elif kind == "setup_failed":
            raise SetupError(f"a worker process could not load the pipeline: {payload}")
        else:
            self._current.pop(w.process.pid, None)
            self._since.pop(w.process.pid, None)
            for record in payload:
                self.on_result(record)

    def _on_death(self, w: _Worker) -> None:
        w.process.join(STOP_TIMEOUT_S)
        if w.process.is_alive():  # the pipe broke but the process hangs on: make sure it is gone
            w.process.kill()
            w.process.join(STOP_TIMEOUT_S)
        pid, how = w.process.pid, describe_exit(w.process.exitcode)
        w.conn.close()
        group = self._current.pop(pid, ())
        self._since.pop(pid, None)
        was_ready = pid in self._ready
        self._ready.discard(pid)
        timed_out = pid in self._timed_out
        self._timed_out.discard(pid)
        if len(group) > 1:  # which call was at fault is unknown: each goes again alone, uncharged
            log.warning("worker %d died (%s) on a group of %d calls; retrying each alone", pid, how, len(group))
            self._retry.extend(group)
        elif group and timed_out:
            self.on_result(CallRecord(source=group[0]).failed(
                Reason.CALL_TIMEOUT, f"still running after {self.call_timeout_s:.0f} s (run.call_timeout_s); "
                "the worker was killed. Check the file, or raise the limit for very long calls"))
        elif group:
            self._on_call_death(pid, how, group[0])
        elif was_ready:
            log.warning("worker %d died (%s) while idle; starting a new one", pid, how)
        else:
            self._on_idle_death(pid, how)
        self._workers = [x for x in self._workers if x.process.pid != pid] + [self._start()]

    def _on_idle_death(self, pid: int, how: str) -> None:
        self._setup_deaths += 1
        log.warning("worker %d died (%s) while loading models; starting a new one", pid, how)
        if self._setup_deaths > 2 * self.n:
            raise SetupError(f"worker processes keep dying while loading the models (last: {how}); "
                             "lower --workers or free memory, then re-run the same command to resume")

    def _on_call_death(self, pid: int, how: str, source: CallSource) -> None:
        self._crashes[source.call_id] += 1
        n = self._crashes[source.call_id]
        if n >= MAX_CRASHES:
            log.warning("worker %d died (%s) on call %s for the %d. time; writing it as %s and going on",
                        pid, how, source.call_id, n, Reason.WORKER_CRASHED)
            record = CallRecord(source=source).failed(
                Reason.WORKER_CRASHED, f"the worker process died {n} times while on this call (last: {how}); "
                "often out of memory — check the file, or raise the memory limit")
            self.on_result(record)
        else:
            log.warning("worker %d died (%s) while on call %s; restarting the worker and retrying the call",
                        pid, how, source.call_id)
            self._retry.append(source)
