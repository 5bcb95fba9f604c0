"""How calls are run: ``make_executor(engine, cfg)`` gives the local engine or the Ray engine.

Both run the same stage list (``pipeline.build_stages``) on worker processes with pinned thread
counts and follow the same supervision ledger; the calling process owns the sinks and the summary.
"""

from __future__ import annotations

from typing import Optional

from qc_pipeline.config import ENGINES, PipelineConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.executors.base import Executor, resolve_workers
from qc_pipeline.executors.local import LocalExecutor


def make_executor(engine: str, cfg: PipelineConfig, workers: Optional[int] = None) -> Executor:
    """The executor for ``--engine``: ``LocalExecutor`` or ``RayExecutor`` (same ``run`` contract)."""
    if engine == "local":
        return LocalExecutor(cfg, workers)
    if engine == "ray":
        from qc_pipeline.executors.ray import RayExecutor

        return RayExecutor(cfg, workers, address=cfg.run.ray_address)  # else $RAY_ADDRESS, else a local Ray
    raise SetupError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")


__all__ = ["Executor", "LocalExecutor", "make_executor", "resolve_workers"]
