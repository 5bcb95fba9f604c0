"""Executors: run the same stage list over many calls.

``LocalExecutor`` runs in-process (1 worker) or in N spawned worker processes, each
loading the models once.  The main process owns the writer, the progress bar and the
run summary; workers only compute.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from qc_pipeline.config import ENGINES, PipelineConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.pipeline import Pipeline, build_stages
from qc_pipeline.records import CallRecord, CallSource

log = logging.getLogger(__name__)

@dataclass
class RunStats:
    """Counts for the run summary (datatrove-style: every drop is counted with its reason)."""

    total: int = 0
    skipped_done: int = 0
    duplicates: int = 0
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
    def rtf(self) -> Optional[float]:
        return self.wall_s / self.audio_s if self.audio_s > 0 else None

    def to_dict(self) -> dict:
        return {
            "calls_total": self.total, "skipped_already_done": self.skipped_done,
            "duplicate_inputs_skipped": self.duplicates, "ok": self.ok, "failed": dict(self.failed),
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
        failed = ", ".join(f"{k}={v}" for k, v in sorted(self.failed.items())) or "none"
        lines = [
            f"calls: {self.ok + sum(self.failed.values())} processed ({self.ok} ok, {sum(self.failed.values())} failed), "
            f"{self.skipped_done} already done, {self.duplicates} duplicate inputs skipped",
            f"failed by reason: {failed}",
            f"audio: {d['audio_hours']:.3f} h, chat sessions: {self.chat_sessions}, wall: {self.wall_s:.1f} s, "
            f"real-time factor: {d['real_time_factor'] if d['real_time_factor'] is not None else 'n/a'}",
        ]
        if self.drops:
            lines.append("dropped on purpose: " + ", ".join(f"{k}={v}" for k, v in sorted(self.drops.items())))
        if self.flags:
            lines.append("pipeline flags: " + ", ".join(f"{k}={v}" for k, v in sorted(self.flags.items())))
        if self.scored:
            lines.append(f"scored: {self.scored} sessions, mean score {d['mean_score']}, "
                         f"{self.flagged_sessions} flagged for review ("
                         + (", ".join(f"{k}={v}" for k, v in sorted(self.qa_flags.items())) or "none") + ")")
        return "\n".join(lines)


def resolve_workers(cfg: PipelineConfig, workers: Optional[int] = None) -> int:
    """``--workers`` (else ``run.workers``); 0 = one per core."""
    n = cfg.run.workers if workers is None else workers
    return n if n > 0 else (os.cpu_count() or 1)


def calls_per_task(cfg: PipelineConfig) -> int:
    """``run.calls_per_task``, auto (0): 8 when ASR batches on a GPU (short calls share its batches), else 1
    (on CPU, grouping calls measured no faster than batching within each call, and costs memory)."""
    if cfg.run.calls_per_task > 0:
        return cfg.run.calls_per_task
    if cfg.asr.batch_size != 0:
        from qc_pipeline.asr.registry import backend_uses_gpu

        return 8 if backend_uses_gpu(cfg.asr) else 1
    return 1


def _groups(sources: Iterable[CallSource], size: int):
    group: list[CallSource] = []
    for src in sources:
        group.append(src)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


class LocalExecutor:
    def __init__(self, cfg: PipelineConfig, workers: Optional[int] = None) -> None:
        self.cfg = cfg
        self.workers = resolve_workers(cfg, workers)
        self.group_size = calls_per_task(cfg)

    def run(self, sources: Iterable[CallSource], on_result: Callable[[CallRecord], None],
            total: Optional[int] = None) -> None:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="call", disable=not self.cfg.run.progress, dynamic_ncols=True)
        try:
            if self.workers <= 1:
                pipeline = Pipeline(build_stages(self.cfg))
                pipeline.setup()
                for group in _groups(sources, self.group_size):
                    for rec in pipeline.run_many(group):
                        on_result(rec)
                        bar.update(1)
            else:
                self._run_pool(sources, on_result, bar, total)
        finally:
            bar.close()

    def _run_pool(self, sources, on_result, bar, total: Optional[int] = None) -> None:
        """Spawned workers; a worker that dies is replaced and its call retried (see workerpool)."""
        from qc_pipeline.workerpool import WorkerPool

        def deliver(rec: CallRecord) -> None:
            on_result(rec)
            bar.update(1)

        WorkerPool(self.cfg, self.workers, deliver, group_size=self.group_size).run(sources, total=total)




def make_executor(engine: str, cfg: PipelineConfig, workers: Optional[int] = None):
    """The executor for ``--engine``: ``LocalExecutor`` or ``executor_ray.RayExecutor`` (same ``run`` contract)."""
    if engine == "local":
        return LocalExecutor(cfg, workers)
    if engine == "ray":
        from qc_pipeline.executor_ray import RayExecutor

        return RayExecutor(cfg, workers, address=cfg.run.ray_address)  # else $RAY_ADDRESS, else a local Ray
    raise SetupError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")


def run_batch(inputs: list[str], out_dir: str, cfg: PipelineConfig, *, workers: Optional[int] = None,
              run_id: Optional[str] = None, engine: Optional[str] = None, executor=None) -> RunStats:
    """Discover inputs, skip calls already done in ``out_dir``, process the rest, write Parquet.

    ``engine`` picks the executor (``local`` or ``ray``); ``executor`` passes a ready one instead
    (anything with ``run(sources, on_result, total)``, e.g. a ``RayExecutor`` with custom options).
    Either way this process owns the writer, resume and statistics, so output is engine-independent.
    """
    if executor is None:  # built before reading inputs: a missing Ray fails fast
        executor = make_executor(engine or cfg.run.engine, cfg, workers)
    from qc_pipeline.inputs import discover
    from qc_pipeline.asr.install import resolve_asr_model
    from qc_pipeline.writer import ResultWriter, completed_call_ids, new_run_id

    t0 = time.perf_counter()
    sources, dups = discover(inputs)
    done = completed_call_ids(out_dir)
    todo = [s for s in sources if s.call_id not in done]
    stats = RunStats(total=len(sources), skipped_done=len(sources) - len(todo), duplicates=dups)
    asr_name, asr_sha = "", ""
    if any(s.kind == "audio" and s.input_error is None for s in todo):
        resolved = resolve_asr_model(cfg.asr.model)  # fail fast, before any worker starts
        asr_name, asr_sha = resolved.name, resolved.sha256
    run_id = run_id or new_run_id()
    writer = ResultWriter(out_dir, run_id=run_id, config_hash=cfg.fingerprint(), asr_model=asr_name,
                          asr_sha=asr_sha, flush_every=cfg.output.flush_every, compression=cfg.output.compression)
    log.info("run %s: %d inputs, %d already done, %d to process", run_id, len(sources), stats.skipped_done, len(todo))

    def on_result(rec: CallRecord) -> None:
        stats.add(rec)
        if not rec.ok:
            log.warning("call %s failed: %s (%s)", rec.call_id, rec.error_reason, rec.error_detail)
        writer.add(rec)

    try:
        if todo:
            executor.run(todo, on_result, total=len(todo))
    finally:
        writer.close()
        stats.wall_s = time.perf_counter() - t0
    return stats
