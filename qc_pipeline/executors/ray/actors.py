"""What runs inside a Ray actor: a slice of the stage list (or all of it), with pinned thread counts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.records import CallRecord
from qc_pipeline.stages.base import Stage


def vm_hwm_mib(pid: str = "self") -> Optional[float]:
    """Peak resident memory (VmHWM) of a live process, in MiB; None where /proc is unavailable."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)


def unusable_gpu(cfg: PipelineConfig, gpu_ids: Sequence) -> Optional[str]:
    """Why an actor that Ray gave a GPU (``gpu_ids``) would still decode on the CPU, else None: the layout
    reserved the GPU because ``asr.device`` is auto, but the ASR backend cannot use it here (CTranslate2: no
    cuBLAS 12, or it sees no GPU), and a GPU actor runs few, single-threaded ASR workers - a CPU fallback
    would be many times slower.  Without the backend installed there is nothing to check (a run with audio
    fails before any actor starts, in ``run_batch``; a chat-only run needs no ASR)."""
    if not gpu_ids or cfg.asr.device == "cpu":
        return None
    from qc_pipeline.asr.registry import backend_gpu_problem

    if (problem := backend_gpu_problem(cfg.asr)) is None:
        return None
    return f"this Ray actor holds a GPU, but {problem}; fix it on every GPU node, or set asr.device=cpu"


class StageActor:
    """Runs a slice of the stage list (or all of it) on groups of calls.  Wrapped with ``ray.remote`` at
    run time; ``first`` takes ``CallSource`` groups, later pools the previous pool's records."""

    def __init__(self, cfg: PipelineConfig, names: Optional[tuple[str, ...]], first: bool, last: bool,
                 build: Callable[[PipelineConfig], Sequence[Stage]], cwd: Optional[str]) -> None:
        from qc_pipeline.executors.base import pin_threads

        pin_threads(cfg.asr.cpu_threads)
        from qc_pipeline.pipeline import Pipeline

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
        if cwd and os.path.isdir(cwd):  # relative config paths (scorecard, models) resolve like on the driver
            os.chdir(cwd)
        self.first, self.last, self.error = first, last, None
        self.pipeline = None
        try:
            stages = list(build(cfg))
            if names is not None:
                stages = [s for s in stages if s.name in names]
            import ray

            if (why := unusable_gpu(cfg, ray.get_gpu_ids())) is not None:
                raise SetupError(why)
            self.pipeline = Pipeline(stages)
            self.pipeline.setup()
            pin_threads(cfg.asr.cpu_threads)
        except Exception as exc:  # reported by ready(); the driver turns it into a SetupError
            self.error = f"{exc.__class__.__name__}: {exc}"

    def ready(self) -> tuple[Optional[str], str]:
        """(setup error or None, IP address of the node this actor runs on)."""
        import ray

        return self.error, ray.util.get_node_ip_address()

    def run(self, items: list) -> tuple[bool, list[CallRecord]]:
        """``(any call still ok, records)``; the driver forwards only the records reference."""
        from qc_pipeline.pipeline import initial_record

        if self.pipeline is None:
            raise RuntimeError(f"worker setup failed: {self.error}")
        records = [initial_record(s) for s in items] if self.first else items
        records = self.pipeline.advance(records, final=self.last)
        return any(r.ok for r in records), records

    def peak_rss_mib(self) -> tuple[int, Optional[float]]:
        return os.getpid(), vm_hwm_mib()
