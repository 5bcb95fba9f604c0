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
    from qc_pipeline.stages.roles import RoleStage
    from qc_pipeline.stages.decode import DecodeStage
    from qc_pipeline.stages.score import ScoreStage
    from qc_pipeline.stages.segment import SegmentStage

    stages: list[Stage] = [
        DecodeStage(cfg.audio),
        SegmentStage(cfg.vad, cfg.diarization),
        AsrStage(cfg.asr, cfg.vad),
        RoleStage(cfg.diarization),
        ChatStage(simplified=cfg.asr.simplified),
    ]
    if cfg.scoring.enabled:
        stages.append(ScoreStage(cfg.scoring))
    return stages


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
        self.setup()
        record = CallRecord(source=source)
        if source.input_error:
            reason, detail = source.input_error
            return record.failed(reason, detail)
        timings = []
        for stage in self.stages:
            if not stage.applies_to(record):
                continue
            t0 = time.perf_counter()
            try:
                record = stage.process(record)
            except CallError as exc:
                record = record.failed(exc.reason, exc.detail)
            except MemoryError:
                record = record.failed(Reason.INTERNAL_ERROR, f"out of memory in stage {stage.name}")
            except Exception as exc:  # one bad call must not stop the batch
                log.error("call %s: stage %s crashed:\n%s", source.call_id, stage.name, traceback.format_exc())
                record = record.failed(Reason.INTERNAL_ERROR, f"{stage.name}: {exc.__class__.__name__}: {exc}")
            timings.append((stage.name, round(time.perf_counter() - t0, 4)))
            if not record.ok:
                break
        return record.replace(audio=None, timings=tuple(timings))
