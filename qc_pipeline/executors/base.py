"""What every engine shares: the executor contract, worker counts, call groups and pinned thread counts.

Nothing here starts a process.  ``pin_threads`` is called first thing in every place a stage runs (a
local worker process, a Ray actor), so numeric results cannot depend on which engine or machine ran a
call: on some CPUs OpenBLAS gives different float results with 1 and 2 threads, and those differences
grow into different speaker turns and words.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
from typing import Callable, Iterable, Iterator, Optional, Protocol

from qc_pipeline.config import PipelineConfig
from qc_pipeline.executors.ledger import Group
from qc_pipeline.records import CallRecord, CallSource

# Environment variables read by BLAS / OpenMP runtimes when they load (torch reads OMP_NUM_THREADS).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class Executor(Protocol):
    """Runs the stage list over ``sources`` and hands every finished record to ``on_result`` in the
    calling process, exactly once per source (an error record when the call failed)."""

    def run(self, sources: Iterable[CallSource], on_result: Callable[[CallRecord], None],
            total: Optional[int] = None) -> None: ...


def resolve_workers(cfg: PipelineConfig, workers: Optional[int] = None) -> int:
    """``--workers`` (else ``run.workers``); 0 = one per core."""
    n = cfg.run.workers if workers is None else workers
    return n if n > 0 else (os.cpu_count() or 1)


def worker_config(cfg: PipelineConfig, workers: int) -> PipelineConfig:
    """The config a worker gets: ``asr.cpu_threads`` resolved to a number (0 = the cores split over the
    workers), so every library in every worker is pinned to the same, known thread count."""
    if cfg.asr.cpu_threads > 0:
        return cfg
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    return dataclasses.replace(cfg, asr=dataclasses.replace(cfg.asr, cpu_threads=threads))


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(max(1, threads)) for name in THREAD_ENV_VARS}


def worker_env(threads: int) -> dict[str, str]:
    """The environment a worker process (local or Ray actor) starts with: pinned thread counts, and glibc's
    malloc asked to back its big blocks with transparent huge pages (``glibc.malloc.hugetlb=1``, read by the
    C library at process start, hence set before the process exists; glibc >= 2.35, ignored by older ones
    and where THP is off).  CTranslate2 allocates and frees its activations on every decoding step; with 4 KiB
    pages each fresh block is hundreds of page faults: the tunable cut a worker's minor faults by 90% and its
    ASR CPU time by 15-19% (stereo + mono sample calls, whisper-base, same peak RSS, same outputs).  A
    ``GLIBC_TUNABLES`` of the caller is kept."""
    env = thread_env(threads)
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in tunables:
        env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, "glibc.malloc.hugetlb=1") if t)
    return env


def pin_threads(threads: int) -> None:
    """Pin BLAS, OpenMP and torch to ``threads`` in this process: the environment for libraries loaded
    later, threadpoolctl for those already loaded (numpy's OpenBLAS), torch when it is imported.
    CTranslate2 takes ``asr.cpu_threads`` itself; onnxruntime sessions set their own thread counts."""
    threads = max(1, threads)
    os.environ.update(thread_env(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn, a core dependency; never fatal
        pass
    else:
        threadpool_limits(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def calls_per_task(cfg: PipelineConfig, gpu: Optional[bool] = None) -> int:
    """``run.calls_per_task``, auto (0): 8 when ASR batches on a GPU (short calls share its batches), else 1
    (on CPU, grouping calls measured no faster than batching within each call, and costs memory).
    ``gpu``: whether ASR runs on a GPU (the Ray engine knows from its cluster); None = look on this machine."""
    if cfg.run.calls_per_task > 0:
        return cfg.run.calls_per_task
    if cfg.asr.batch_size == 0 or cfg.asr.device == "cpu":
        return 1
    if gpu is None:
        from qc_pipeline.asr.registry import backend_uses_gpu

        gpu = backend_uses_gpu(cfg.asr)  # asks the ASR backend; loads no model
    return 8 if gpu else 1


class Feeder:
    """Hands out groups of up to ``size`` calls, retries first.  With ``total`` known, groups shrink
    towards the end of the run so no worker starves (8 calls on 2 workers: 4 + 4, not 8 + 0)."""

    def __init__(self, sources: Iterable[CallSource], size: int, slots: int, total: Optional[int] = None) -> None:
        self._it: Iterator[CallSource] = iter(sources)
        self.size = max(1, size)
        self.slots = max(1, slots)
        self._left = total
        self._retry: collections.deque[Group] = collections.deque()
        self.exhausted = False

    def retry(self, groups: Iterable[Group]) -> None:
        self._retry.extend(groups)

    @property
    def pending_retries(self) -> bool:
        return bool(self._retry)

    def next(self) -> Optional[Group]:
        if self._retry:
            return self._retry.popleft()
        if self.exhausted:
            return None
        size = self.size
        if self._left is not None:
            size = max(1, min(size, -(-self._left // self.slots)))
        group = tuple(s for s in (next(self._it, None) for _ in range(size)) if s is not None)
        if self._left is not None:
            self._left -= len(group)
        if len(group) < size:
            self.exhausted = True
        return group or None
