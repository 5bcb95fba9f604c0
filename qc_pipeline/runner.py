"""``run_batch``: inputs -> executor -> sinks, under an exclusive lock on the output folder.

The calling process owns everything that is written: it discovers the inputs, skips calls already
committed (or, with ``retry_failed``, re-runs those whose latest row failed for one of those
reasons), masks personal numbers in every finished record (``scoring.mask_pii``), hands the records
to the sink and keeps the run statistics -- so the output does not depend on the engine.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import OutputLocked, Reason, SetupError
from qc_pipeline.executors import Executor, make_executor
from qc_pipeline.records import CallRecord

log = logging.getLogger(__name__)

LOCK_FILE = Path("_runs") / "lock"
SUMMARY_FILE = Path("_runs") / "last_summary.json"
LISTED = 20   # ids / inputs named in the text summary (the JSON summary lists all)


@dataclass
class RunStats:
    """Counts for the run summary (datatrove-style: every drop is counted with its reason)."""

    total: int = 0
    skipped_done: int = 0
    duplicates: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    skipped_inputs: list[dict] = field(default_factory=list)   # {"input", "reason", "detail"}
    retried: int = 0                                           # calls re-run for --retry-failed
    ok: int = 0
    failed: Counter = field(default_factory=Counter)
    flags: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    audio_s: float = 0.0
    chat_sessions: int = 0
    stage_s: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    scored: int = 0
    score_sum: float = 0.0
    qa_flags: Counter = field(default_factory=Counter)   # scores.flags: low_score, veto, compliance_hit, ...
    flagged_sessions: int = 0

    def add(self, rec: CallRecord) -> None:
        if rec.ok:
            self.ok += 1
        else:
            self.failed[rec.error_reason] += 1
        self.flags.update(rec.flags)
        for k, v in rec.drops:
            self.drops[k] += v
        for k, v in rec.timings:
            self.stage_s[k] += v
        if rec.score is not None:
            self.scored += 1
            self.score_sum += rec.score.total
            self.qa_flags.update(rec.score.flags)
            self.flagged_sessions += bool(rec.score.flags)
        if rec.source.kind == "chat":
            self.chat_sessions += 1
        elif rec.audio_info is not None:
            self.audio_s += rec.audio_info.duration_s

    @property
    def failures(self) -> int:
        """Calls that failed in this run plus inputs that gave no rows: non-zero makes a non-zero exit."""
        return sum(self.failed.values()) + len(self.skipped_inputs)

    @property
    def rtf(self) -> Optional[float]:
        return self.wall_s / self.audio_s if self.audio_s > 0 else None

    def to_dict(self) -> dict:
        return {
            "calls_total": self.total, "skipped_already_done": self.skipped_done, "retried_failed": self.retried,
            "duplicate_inputs_skipped": self.duplicates, "duplicate_ids": self.duplicate_ids,
            "inputs_skipped": self.skipped_inputs, "ok": self.ok, "failed": dict(self.failed),
            "flags": dict(self.flags), "dropped": dict(self.drops), "chat_sessions": self.chat_sessions,
            "audio_hours": round(self.audio_s / 3600, 4), "wall_s": round(self.wall_s, 2),
            "real_time_factor": round(self.rtf, 4) if self.rtf is not None else None,
            "stage_seconds": {k: round(v, 2) for k, v in self.stage_s.items()},
            "scored_sessions": self.scored,
            "mean_score": round(self.score_sum / self.scored, 2) if self.scored else None,
            "flagged_for_review": self.flagged_sessions, "qa_flags": dict(self.qa_flags),
        }

    def format(self) -> str:
        d = self.to_dict()
        n_failed = sum(self.failed.values())
        failed = ", ".join(f"{k}={v}" for k, v in sorted(self.failed.items())) or "none"
        lines = [
            f"calls: {self.ok + n_failed} processed ({self.ok} ok, {n_failed} failed), {self.skipped_done} already "
            f"done, {self.retried} failed before and retried, {self.duplicates} duplicate inputs skipped",
            f"failed by reason: {failed}",
            f"audio: {d['audio_hours']:.3f} h, chat sessions: {self.chat_sessions}, wall: {self.wall_s:.1f} s, "
            f"real-time factor: {d['real_time_factor'] if d['real_time_factor'] is not None else 'n/a'}",
        ]
        if self.duplicate_ids:
            lines.append("duplicate ids skipped (first input wins): " + _listed(self.duplicate_ids))
        for s in self.skipped_inputs[:LISTED]:
            lines.append(f"input skipped ({s['reason']}): {s['input']}: {s['detail']}")
        if len(self.skipped_inputs) > LISTED:
            lines.append(f"... and {len(self.skipped_inputs) - LISTED} more inputs skipped (see the JSON summary)")
        if self.drops:
            lines.append("dropped on purpose: " + ", ".join(f"{k}={v}" for k, v in sorted(self.drops.items())))
        if self.flags:
            lines.append("pipeline flags: " + ", ".join(f"{k}={v}" for k, v in sorted(self.flags.items())))
        if self.scored:
            lines.append(f"scored: {self.scored} sessions, mean score {d['mean_score']}, "
                         f"{self.flagged_sessions} flagged for review ("
                         + (", ".join(f"{k}={v}" for k, v in sorted(self.qa_flags.items())) or "none") + ")")
        return "\n".join(lines)


def _listed(ids: list[str]) -> str:
    more = f" ... and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return ", ".join(ids[:LISTED]) + more


@contextmanager
def output_lock(out_dir: str | os.PathLike, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` (``_runs/lock``, flock: released when the process dies, even
    by SIGKILL).  Another holder: :class:`OutputLocked` at once, or wait for it with ``wait``."""
    from qc_pipeline.sinks.parquet import output_unwritable

    path = Path(out_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_unwritable(out_dir, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "holder unknown"
            if not wait:
                raise OutputLocked(f"output folder {out_dir} is in use by another qc-pipeline run or compaction "
                                   f"({holder}); wait for it to finish, or pass --wait-lock to wait") from None
            log.info("output folder %s is in use (%s); waiting for it (--wait-lock)", out_dir, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a waiting run)


def run_batch(inputs: list[str], out_dir: str, cfg: PipelineConfig, *, workers: Optional[int] = None,
              run_id: Optional[str] = None, engine: Optional[str] = None, executor: Optional[Executor] = None,
              retry_failed: Iterable[str] = (), wait_lock: bool = False) -> RunStats:
    """Discover inputs, skip calls already done in ``out_dir``, process the rest, write Parquet.

    ``engine`` picks the executor (``local`` or ``ray``); ``executor`` passes a ready one instead
    (anything with ``run(sources, on_result, total)``, e.g. a ``RayExecutor`` with custom options).
    ``retry_failed``: reason codes whose failed calls are processed again (the new row wins when read).
    Raises :class:`OutputLocked` when another run holds ``out_dir`` (unless ``wait_lock``).
    """
    from zoneinfo import ZoneInfo

    from qc_pipeline.asr.install import resolve_asr_model
    from qc_pipeline.inputs import discover
    from qc_pipeline.scoring.pii import mask_record
    from qc_pipeline.sinks.parquet import ParquetSink, new_run_id

    retry = frozenset(retry_failed)
    unknown = sorted(retry - set(Reason.ALL))
    if unknown:
        raise SetupError(f"--retry-failed: unknown reason code(s) {', '.join(unknown)}; use any of {', '.join(Reason.ALL)}")
    if executor is None:  # built before reading inputs: a missing Ray fails fast
        executor = make_executor(engine or cfg.run.engine, cfg, workers)
    t0 = time.perf_counter()
    with output_lock(out_dir, wait_lock):
        found = discover(inputs, tz=ZoneInfo(cfg.run.input_timezone))
        run_id = run_id or new_run_id()
        sink = ParquetSink(out_dir, run_id=run_id, config_hash=cfg.fingerprint(), flush_every=cfg.output.flush_every,
                           flush_interval_s=cfg.output.flush_interval_s, compression=cfg.output.compression)
        sink.open()
        committed = sink.committed(retry)
        todo = [s for s in found.sources if s.call_id not in committed.done]
        stats = RunStats(total=len(found.sources), skipped_done=len(found.sources) - len(todo),
                         duplicates=len(found.duplicates), duplicate_ids=[s.call_id for s in found.duplicates],
                         skipped_inputs=[{"input": s.input, "reason": s.reason, "detail": s.detail}
                                         for s in found.skipped],
                         retried=sum(s.call_id in committed.retry for s in todo))
        if any(s.kind == "audio" and s.input_error is None for s in todo):
            resolved = resolve_asr_model(cfg.asr.model)  # fail fast, before any worker starts
            sink.meta.update(asr_model=resolved.name, asr_sha=resolved.sha256)
        log.info("run %s: %d inputs, %d already done, %d to process (%d retried)", run_id, len(found.sources),
                 stats.skipped_done, len(todo), stats.retried)

        def on_result(rec: CallRecord) -> None:
            if cfg.scoring.mask_pii:
                rec = mask_record(rec)  # the one place: nothing unmasked reaches a sink
            stats.add(rec)
            if not rec.ok:
                log.warning("call %s failed: %s (%s)", rec.call_id, rec.error_reason, rec.error_detail)
            sink.add(rec)

        try:
            if todo:
                executor.run(todo, on_result, total=len(todo))
        finally:
            sink.close()
            stats.wall_s = time.perf_counter() - t0
        try:
            (Path(out_dir) / SUMMARY_FILE).write_text(json.dumps(stats.to_dict(), ensure_ascii=False, indent=2),
                                                      "utf-8")
        except OSError as exc:  # the results are committed; only the summary file is missing
            log.warning("could not write %s: %s", Path(out_dir) / SUMMARY_FILE, exc)
    return stats
