"""The stage list and how one call goes through it."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Sequence

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import CallRecord, CallSource
from qc_pipeline.stages.base import Stage

log = logging.getLogger(__name__)


def build_stages(cfg: PipelineConfig) -> list[Stage]:
    """The default stage list.  Heavy imports happen in ``Stage.setup`` so this stays cheap."""
    from qc_pipeline.stages.asr import AsrStage
    from qc_pipeline.stages.chat import ChatStage
    from qc_pipeline.stages.decode import DecodeStage
    from qc_pipeline.stages.roles import RoleStage
    from qc_pipeline.stages.score import ScoreStage
    from qc_pipeline.stages.segment import SegmentStage
    from qc_pipeline.stages.summarize import SummarizeStage

    stages: list[Stage] = [
        DecodeStage(cfg.audio),
        SegmentStage(cfg.vad, cfg.diarization),
        AsrStage(cfg.asr, cfg.vad),
        RoleStage(cfg.diarization),
        ChatStage(simplified=cfg.asr.simplified),
    ]
    if cfg.summary.enabled:  # before scoring: a card may use the call type
        stages.append(SummarizeStage(cfg))
    if cfg.scoring.enabled:
        stages.append(ScoreStage(cfg.scoring, llm=cfg.llm))
    return stages


def run_stage(stage: Stage, record: CallRecord) -> CallRecord:
    """One stage on one record; any failure becomes an error record with a reason code."""
    try:
        return stage.process(record)
    except CallError as exc:
        return record.failed(exc.reason, exc.detail)
    except MemoryError:
        return record.failed(Reason.INTERNAL_ERROR, f"out of memory in stage {stage.name}")
    except Exception as exc:  # one bad call must not stop the batch
        log.error("call %s: stage %s crashed:\n%s", record.call_id, stage.name, traceback.format_exc())
        return record.failed(Reason.INTERNAL_ERROR, f"{stage.name}: {exc.__class__.__name__}: {exc}")


def initial_record(source: CallSource) -> CallRecord:
    """The record a call starts as: an error record already when its input could not be read."""
    record = CallRecord(source=source)
    return record.failed(*source.input_error) if source.input_error else record


class Pipeline:
    """Runs a stage list over one call at a time; a failure becomes an error record, never a crash."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)
        self._ready = False

    def setup(self) -> None:
        if not self._ready:
            for stage in self.stages:
                stage.setup()
            self._ready = True

    def run_one(self, source: CallSource) -> CallRecord:
        return self.run_many([source])[0]

    def run_many(self, sources: Sequence[CallSource]) -> list[CallRecord]:
        """Several calls through the stage list together.  A stage with ``process_many`` (the ASR stage:
        one batched decoding pass over the windows of all these calls) gets them as a group; if the
        group fails, each call is retried alone so the failure lands on the call that caused it.
        Results are the same as ``run_one`` per call (one failed call is one error record)."""
        return self.advance([initial_record(s) for s in sources], final=True)

    def advance(self, records: Sequence[CallRecord], final: bool = True) -> list[CallRecord]:
        """Run this stage list on records that may already be part-way through the full list (the Ray
        engine's split layout runs slices of it in different pools).  Audio is dropped from failed
        records, and from all of them when ``final``."""
        self.setup()
        records = list(records)
        timings: list[list[tuple[str, float]]] = [list(r.timings) for r in records]
        for stage in self.stages:
            idx = [i for i, r in enumerate(records) if r.ok and stage.applies_to(r)]
            if not idx:
                continue
            group = self._group(stage, [records[i] for i in idx]) if len(idx) > 1 else None
            if group is not None:
                outs, seconds = group
                for i, out in zip(idx, outs):
                    records[i] = out
                    timings[i].append((stage.name, round(seconds / len(idx), 4)))
                continue
            for i in idx:
                t0 = time.perf_counter()
                records[i] = run_stage(stage, records[i])
                timings[i].append((stage.name, round(time.perf_counter() - t0, 4)))
        return [r.replace(timings=tuple(t), audio=None if final or not r.ok else r.audio)
                for r, t in zip(records, timings)]

    @staticmethod
    def _group(stage: Stage, records: list[CallRecord]):
        """``(records, seconds)`` from the stage's ``process_many``, or None to go one by one."""
        many = getattr(stage, "process_many", None)
        if many is None:
            return None
        t0 = time.perf_counter()
        try:
            outs = many(records)
        except Exception as exc:  # isolate the culprit: the caller retries each call alone
            log.warning("stage %s failed on a group of %d calls (%s: %s); retrying them one by one",
                        stage.name, len(records), exc.__class__.__name__, exc)
            return None
        return outs, time.perf_counter() - t0
