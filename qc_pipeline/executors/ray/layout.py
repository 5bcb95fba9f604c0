"""How the Ray engine lays out its actors.

* **fused** (default on CPU): one actor type runs the whole stage list, exactly like a local worker
  process.  On a CPU-only node every stage competes for the same cores, so splitting buys no overlap
  but costs an object-store hop for the decoded audio.
* **split** (default when ASR runs on GPUs): a CPU pool runs ``decode`` + ``segment``, a GPU pool
  (``num_gpus`` 1/``run.ray_actors_per_gpu`` per actor) runs ``asr``, and a CPU pool runs the rest (roles, chat, score).  Groups
  of ``run.calls_per_task`` calls travel between pools through Ray's object store, so the GPU pool
  decodes the windows of a whole group in shared batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.stages.base import Stage

# Stage names per pool in the split layout; stages not named in FRONT or ASR go to the back pool.
FRONT_STAGES = ("decode", "segment")
ASR_STAGES = ("asr",)


@dataclass
class Pool:
    name: str
    names: Optional[tuple[str, ...]]   # stage names run by this pool; None = all
    options: dict                      # ray actor options (num_cpus, num_gpus, runtime_env)
    size: int
    actors: list = field(default_factory=list)   # handles; None = a slot given up (no room left)
    keys: list = field(default_factory=list)     # ledger key of each slot's current actor
    load: list = field(default_factory=list)     # tasks in flight per slot
    peaks: dict = field(default_factory=dict)    # pid -> VmHWM MiB, kept across actor replacements


def plan(cfg: PipelineConfig, workers: int, split: Optional[bool], gpus: int, env: dict,
         build: Callable[[PipelineConfig], Sequence[Stage]]) -> tuple[str, list[Pool]]:
    """``(layout description, pools)`` for a cluster with ``gpus`` GPUs."""
    device = cfg.asr.device
    if device == "cuda" and gpus == 0:
        raise SetupError("asr.device=cuda but the Ray cluster has no GPUs; add GPU nodes or set asr.device=cpu")
    asr_gpu = gpus > 0 and device in ("cuda", "auto")
    split = asr_gpu if split is None else split
    runtime = {"runtime_env": {"env_vars": env}}
    cpu = {"num_cpus": max(1, cfg.asr.cpu_threads), **runtime}
    # GPU actors: run.ray_actors_per_gpu of them share each GPU, never more than the workers asked for
    share = 1 / cfg.run.ray_actors_per_gpu
    n_asr = min(workers, gpus * cfg.run.ray_actors_per_gpu) if asr_gpu else workers
    if not split:
        opts = dict(cpu, num_gpus=share) if asr_gpu else cpu
        return f"fused x{n_asr}" + (" (gpu)" if asr_gpu else ""), [Pool("pipeline", None, opts, n_asr)]
    asr_opts = {"num_cpus": 1, "num_gpus": share, **runtime} if asr_gpu else cpu
    light = {"num_cpus": 1, **runtime}
    back = tuple(s.name for s in build(cfg) if s.name not in FRONT_STAGES + ASR_STAGES)  # in stage-list order
    layout = f"split: front x{workers}, asr x{n_asr}{' (gpu)' if asr_gpu else ''}, back x{workers}"
    return layout, [Pool("front", FRONT_STAGES, light, workers), Pool("asr", ASR_STAGES, asr_opts, n_asr),
                    Pool("back", back, light, workers)]
