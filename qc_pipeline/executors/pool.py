"""A small process pool that survives worker deaths.

Each worker is a spawned process with its own pipe and holds one task (a group of
``run.calls_per_task`` calls) at a time, so when a worker dies (SIGKILL, the OOM killer, a crash
inside a native library) the main process knows exactly which calls it was on.  The dead worker is
replaced; what happens to its calls, and to a call still running after ``run.call_timeout_s`` (its
worker is killed), is the :mod:`~qc_pipeline.executors.ledger`'s policy.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterable, Optional

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.executors.base import Feeder, worker_env
from qc_pipeline.executors.ledger import Ledger, Task, Verdict
from qc_pipeline.records import CallRecord, CallSource

log = logging.getLogger(__name__)

StageBuilder = Callable[[PipelineConfig], list]   # importable function: cfg -> stage list

STOP_TIMEOUT_S = 5.0


# -- worker side ------------------------------------------------------------------------------

def _worker_main(conn: Connection, cfg: PipelineConfig, build: Optional[StageBuilder]) -> None:
    """Pin the thread counts, load the stages once, then answer each group of ``CallSource`` with
    ``("done", [CallRecord, ...])``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's business
    from qc_pipeline.executors.base import pin_threads

    pin_threads(cfg.asr.cpu_threads)  # before the stages import their numeric libraries
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    from qc_pipeline.pipeline import Pipeline, build_stages

    try:
        pipeline = Pipeline((build or build_stages)(cfg))
        pipeline.setup()
        pin_threads(cfg.asr.cpu_threads)  # again for anything setup loaded that ignores the environment
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


def _send(conn: Connection, message) -> bool:
    try:
        conn.send(message)
        return True
    except (BrokenPipeError, EOFError, OSError):
        return False


# -- main side --------------------------------------------------------------------------------

@contextlib.contextmanager
def _environment(env: dict[str, str]):
    """``env`` in this process's environment while the block runs (a worker being spawned), then as before."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    ready: bool = False
    task: Optional[Task] = None

    @property
    def pid(self) -> int:
        return self.process.pid


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
        self.n = max(1, n)
        self.on_result = on_result
        self.group_size = max(1, group_size)  # calls per task: their ASR windows share batched passes
        self.ledger = Ledger(call_timeout_s=cfg.run.call_timeout_s)
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._setup_deaths = 0

    # lifecycle
    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self.cfg, self.build), daemon=True, name="qc-worker")
        with _environment(worker_env(self.cfg.asr.cpu_threads)):  # a spawned process inherits it at exec
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
        feeder = Feeder(sources, self.group_size, self.n, total)
        self._workers = [self._start() for _ in range(self.n)]
        try:
            while True:
                self._dispatch(feeder)
                if feeder.exhausted and not feeder.pending_retries and not any(w.task for w in self._workers):
                    return
                self._wait_once(feeder)
        finally:
            self._stop_all()

    def _dispatch(self, feeder: Feeder) -> None:
        """Hand a task to every ready, idle worker."""
        for w in self._workers:
            if not w.ready or w.task is not None:
                continue
            group = feeder.next()
            if group is None:
                return
            w.task = self.ledger.assign(w.pid, group)
            _send(w.conn, list(group))  # a failed send shows up as a death on the sentinel

    def _wait_once(self, feeder: Feeder) -> None:
        handles = {}
        for w in self._workers:
            handles[w.conn] = w
            handles[w.process.sentinel] = w
        ready = wait(list(handles), timeout=self.ledger.wait_s())
        if not ready:
            self._kill_overdue()
            return
        seen: set[int] = set()
        for handle in ready:
            w = handles[handle]
            if w.pid not in seen:
                seen.add(w.pid)
                self._service(w, feeder)

    def _kill_overdue(self) -> None:
        by_pid = {w.pid: w for w in self._workers}
        for pid, task in self.ledger.overdue():
            w = by_pid.get(pid)
            if w is None or w.task is not task:
                continue
            log.warning("call(s) %s still running after %.0f s (run.call_timeout_s); killing worker %d",
                        ", ".join(s.call_id for s in task.calls), self.ledger.call_timeout_s * len(task.calls), pid)
            self.ledger.mark_timed_out(task)
            w.process.kill()  # its sentinel fires: handled as a death

    def _service(self, w: _Worker, feeder: Feeder) -> None:
        message = None
        try:
            if w.conn.poll():
                message = w.conn.recv()
        except (EOFError, OSError):
            message = None
        if message is None:
            self._on_death(w, feeder)
            return
        kind, payload = message
        if kind == "ready":
            w.ready = True
        elif kind == "setup_failed":
            raise SetupError(f"a worker process could not load the pipeline: {payload}")
        else:
            self.ledger.finished(w.pid, w.task)
            w.task = None
            for record in payload:
                self.on_result(record)

    def _on_death(self, w: _Worker, feeder: Feeder) -> None:
        w.process.join(STOP_TIMEOUT_S)
        if w.process.is_alive():  # the pipe broke but the process hangs on: make sure it is gone
            w.process.kill()
            w.process.join(STOP_TIMEOUT_S)
        how = describe_exit(w.process.exitcode)
        w.conn.close()
        task = w.task
        if task is not None:
            if len(task.calls) > 1:
                log.warning("worker %d died (%s) on a group of %d calls; retrying each alone", w.pid, how,
                            len(task.calls))
            elif not task.timed_out:
                log.warning("worker %d died (%s) while on call %s", w.pid, how, task.calls[0].call_id)
            self._apply(self.ledger.died(w.pid, how), feeder)
        elif w.ready:
            log.warning("worker %d died (%s) while idle; starting a new one", w.pid, how)
        else:
            self._on_setup_death(w.pid, how)
        self._workers = [x for x in self._workers if x.pid != w.pid] + [self._start()]

    def _apply(self, verdict: Verdict, feeder: Feeder) -> None:
        for record in verdict.failed:
            log.warning("call %s written as %s", record.call_id, record.error_reason)
            self.on_result(record)
        feeder.retry(verdict.retry)

    def _on_setup_death(self, pid: int, how: str) -> None:
        self._setup_deaths += 1
        log.warning("worker %d died (%s) while loading models; starting a new one", pid, how)
        if self._setup_deaths > 2 * self.n:
            raise SetupError(f"worker processes keep dying while loading the models (last: {how}); "
                             "lower --workers or free memory, then re-run the same command to resume")
