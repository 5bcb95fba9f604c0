"""The local engine: N spawned worker processes (1 included), each loading the models once.

Every call runs in a worker process at any ``--workers``, so a hung call is killed at
``run.call_timeout_s`` and a poison file takes down a worker, never the run; and every call is
computed with the same pinned thread counts as on a Ray actor.  The calling process owns the writer,
the progress bar and the run summary; workers only compute.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Optional

from qc_pipeline.config import PipelineConfig
from qc_pipeline.executors.base import calls_per_task, resolve_workers, worker_config
from qc_pipeline.executors.pool import StageBuilder, WorkerPool
from qc_pipeline.records import KIND_AUDIO, CallRecord, CallSource

log = logging.getLogger(__name__)


def _advise_on_first_audio(sources: Iterable[CallSource]) -> Iterator[CallSource]:
    """``sources`` unchanged; the first audio call logs that one worker leaves the GPU mostly idle."""
    advised = False
    for source in sources:
        if not advised and source.kind == KIND_AUDIO:
            log.warning("ASR runs on a GPU with 1 worker: the GPU waits on that worker's decoding, VAD and "
                        "scoring (7 % busy on an H200, docs/gpu.md); --workers N shares it among N workers "
                        "(8 were the best measured on a 16-core host)")
            advised = True
        yield source


class LocalExecutor:
    def __init__(self, cfg: PipelineConfig, workers: Optional[int] = None,
                 build: Optional[StageBuilder] = None) -> None:
        self.workers = resolve_workers(cfg, workers)
        self.cfg = worker_config(cfg, self.workers)
        gpu = None  # looked up once, only where the advice below may apply; else calls_per_task looks
        if self.workers == 1 and cfg.asr.device != "cpu":
            from qc_pipeline.asr.registry import backend_uses_gpu

            gpu = backend_uses_gpu(cfg.asr)
        self.advise = bool(gpu)
        self.group_size = calls_per_task(cfg, gpu)
        self.build = build  # None = pipeline.build_stages; must be importable by a spawned process

    def run(self, sources: Iterable[CallSource], on_result: Callable[[CallRecord], None],
            total: Optional[int] = None) -> None:
        from tqdm import tqdm

        with tqdm(total=total, unit="call", disable=not self.cfg.run.progress, dynamic_ncols=True) as bar:
            def deliver(rec: CallRecord) -> None:
                on_result(rec)
                bar.update(1)

            WorkerPool(self.cfg, self.workers, deliver, build=self.build, group_size=self.group_size).run(
                _advise_on_first_audio(sources) if self.advise else sources, total=total)
