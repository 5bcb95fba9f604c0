"""Ray executor: the same stage list as :class:`~qc_pipeline.executor.LocalExecutor`, on Ray actors.

Each actor builds the stage list once (``build_stages(cfg)``, models loaded in the actor) and
runs calls through it.  Two layouts:

* **fused** (default on CPU): one actor type runs the whole stage list per call, exactly like a
  local worker process.  On a CPU-only node every stage competes for the same cores, so
  splitting buys no overlap but costs an object-store hop for the decoded audio.
* **split** (default when ASR runs on GPUs): a CPU pool runs ``decode`` + ``segment``, a GPU pool
  (``num_gpus=1`` per actor) runs ``asr``, and a CPU pool runs the rest (roles, chat, score).
  Records travel between pools through Ray's object store; the driver only forwards references.

Either way results stream back to the driver, which calls ``on_result`` — so ``run_batch``
keeps owning the Parquet writer, resume markers and run statistics, identical across engines.
A failure inside a stage becomes an error row (``Pipeline.run_one`` semantics); a dead actor
is replaced and its call resubmitted once, then written as ``worker_crashed``.  A call still
running after ``run.call_timeout_s`` has its actor killed and replaced and is written as
``call_timeout`` (no retry); calls queued behind it on that actor go again uncharged.  A
replacement actor that cannot set up (after a few tries) stops the run with a ``SetupError``.
When the cluster has no room left for a replacement (its node is gone), the pool goes on one actor
short instead, as long as it has another live actor.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import Reason, SetupError
from qc_pipeline.executor import resolve_workers
from qc_pipeline.pipeline import build_stages, run_stage
from qc_pipeline.records import CallRecord, CallSource
from qc_pipeline.stages.base import Stage

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'qc-pipeline[ray]'"
# Stage names per pool in the split layout; stages not named in FRONT or ASR go to the back pool.
FRONT_STAGES = ("decode", "segment")
ASR_STAGES = ("asr",)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SetupError(f"the Ray engine needs Ray: {INSTALL_HINT} (or use --engine local)") from None
    return ray


def vm_hwm_mib(pid: str = "self") -> Optional[float]:
    """Peak resident memory (VmHWM) of a live process, in MiB; None where /proc is unavailable."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine lays out its actors.

    ``split``: None = split only when ASR runs on GPUs (see module docstring); True/False forces it.
    ``in_flight_per_actor``: calls queued per actor; bounds the calls in flight (backpressure).
    ``max_attempts``: tries per call when its actor dies (2 = resubmit once).
    ``start_timeout_s``: how long to wait for the actors (and each replacement) to load their models.
    ``replace_attempts``: tries to start a replacement for a dead actor before the run stops.
    ``replace_backoff_s``: pause before the n-th retry of a replacement is n times this.
    ``placement_wait_s``: how long a dead actor's resources may take to show up free again before the
    cluster is taken to have shrunk (a node lost): the pool then goes on without that slot, as long
    as it has another live actor.
    ``build``: the stage-list factory (tests swap in a wrapped ``build_stages``).
    """

    split: Optional[bool] = None
    in_flight_per_actor: int = 2
    max_attempts: int = 2
    start_timeout_s: float = 900.0
    replace_attempts: int = 3
    replace_backoff_s: float = 2.0
    placement_wait_s: float = 20.0
    build: Callable[[PipelineConfig], Sequence[Stage]] = build_stages


def _free_per_node(ray) -> list[dict]:
    """Free resources of each alive node (Ray has no public per-node call; the cluster-wide sum is
    the fallback, which can overstate room when the free share is spread over several nodes)."""
    try:
        from ray._private.state import available_resources_per_node

        return list(available_resources_per_node().values())
    except Exception:  # another Ray version
        return [ray.available_resources()]


def _advance(stages: Sequence[Stage], record: CallRecord, final: bool) -> CallRecord:
    """Run ``stages`` on a record already part-way through the list (``Pipeline.run_one`` semantics).

    Used by the split layout only; the fused layout calls ``Pipeline.run_one`` itself.
    """
    timings = list(record.timings)
    for stage in stages:
        if not stage.applies_to(record):
            continue
        t0 = time.perf_counter()
        record = run_stage(stage, record)
        timings.append((stage.name, round(time.perf_counter() - t0, 4)))
        if not record.ok:
            break
    record = record.replace(timings=tuple(timings))
    return record.replace(audio=None) if final or not record.ok else record


class StageActor:
    """Runs a slice of the stage list (or all of it).  Wrapped with ``ray.remote`` at run time."""

    def __init__(self, cfg: PipelineConfig, names: Optional[tuple[str, ...]], first: bool, last: bool,
                 build: Callable[[PipelineConfig], Sequence[Stage]], cwd: Optional[str]) -> None:
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
            self.pipeline = Pipeline(stages)
            self.pipeline.setup()
        except Exception as exc:  # reported by ready(); the driver turns it into a SetupError
            self.error = f"{exc.__class__.__name__}: {exc}"

    def ready(self) -> tuple[Optional[str], str]:
        """(setup error or None, IP address of the node this actor runs on)."""
        import ray

        return self.error, ray.util.get_node_ip_address()

    def run(self, item) -> tuple[bool, CallRecord]:
        """``item`` is a CallSource for the first pool, else the record from the previous pool."""
        if self.pipeline is None:
            raise RuntimeError(f"worker setup failed: {self.error}")
        if self.first and self.last:
            rec = self.pipeline.run_one(item)
        else:
            if self.first:
                rec = CallRecord(source=item)
                if item.input_error:
                    rec = rec.failed(*item.input_error)
            else:
                rec = item
            rec = _advance(self.pipeline.stages, rec, self.last)
        return rec.ok, rec

    def peak_rss_mib(self) -> tuple[int, Optional[float]]:
        return os.getpid(), vm_hwm_mib()


@dataclass
class _Pool:
    name: str
    names: Optional[tuple[str, ...]]
    options: dict
    size: int
    actors: list = field(default_factory=list)
    load: list = field(default_factory=list)
    peaks: dict = field(default_factory=dict)   # pid -> VmHWM MiB, kept across actor replacements


@dataclass
class _Job:
    source: CallSource
    pool: int
    actor: int
    handle: Any
    attempt: int
    record_ref: Any = None
    seq: int = 0        # submission order; an actor runs its calls in this order
    started: Optional[float] = None  # monotonic time it became its actor's running call (as seen here)
    timed_out: bool = False          # its actor was killed for running it past run.call_timeout_s
    lost: int = 0                    # times an intermediate result of it was lost (resubmitted from pool 0)


class RayExecutor:
    """``run(sources, on_result, total)`` on Ray actors; same contract as ``LocalExecutor``.

    ``address``: a Ray cluster to connect to; default ``$RAY_ADDRESS``, else a local Ray started
    (and shut down) for this run.  An already initialised Ray session is reused and left running.
    """

    def __init__(self, cfg: PipelineConfig, workers: Optional[int] = None, address: Optional[str] = None,
                 options: Optional[RayOptions] = None) -> None:
        _import_ray()  # fail before any input is read
        self.cfg = cfg
        self.workers = resolve_workers(cfg, workers)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.options = options or RayOptions()
        if min(self.options.in_flight_per_actor, self.options.max_attempts, self.options.replace_attempts) < 1:
            raise SetupError("RayOptions: in_flight_per_actor, max_attempts and replace_attempts must be >= 1")
        # per pool: peak RSS (MiB) of every actor that ran, filled at the end of run()
        self.worker_peaks_mib: dict[str, list[float]] = {}
        self.layout = ""
        self.actor_nodes: dict[str, dict[str, int]] = {}   # pool -> node IP -> actors at start (not replacements)
        self.dropped_slots: dict[str, int] = {}   # pool -> actors not replaced (no room left in the cluster)
        self._seq = 0

    # -- cluster and actors -----------------------------------------------------------------
    def _cpu_per_actor(self) -> int:
        return max(1, self.cfg.asr.cpu_threads)

    def _init_ray(self, ray) -> bool:
        """Start or connect to Ray; True when this run owns the session (and shuts it down)."""
        if ray.is_initialized():
            return False
        kwargs: dict = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address:
            kwargs["address"] = self.address
        else:
            # logical CPUs for Ray's scheduler: enough for the largest layout (split: front + asr + back)
            need = self.workers * self._cpu_per_actor() + (2 * self.workers if self.options.split is not False else 0)
            kwargs.update(include_dashboard=False, num_cpus=max(os.cpu_count() or 1, need))
        try:
            ray.init(**kwargs)
        except Exception as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise SetupError(f"cannot start {where} ({exc.__class__.__name__}: {exc}); check RAY_ADDRESS / "
                             "`ray status`, or use --engine local") from None
        return True

    def _plan(self, ray) -> list[_Pool]:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        device = self.cfg.asr.device
        if device == "cuda" and gpus == 0:
            raise SetupError("asr.device=cuda but the Ray cluster has no GPUs; add GPU nodes or set asr.device=cpu")
        asr_gpu = gpus > 0 and device in ("cuda", "auto")
        split = asr_gpu if self.options.split is None else self.options.split
        env = self._actor_env()
        cpu = {"num_cpus": self._cpu_per_actor(), "runtime_env": {"env_vars": env}}
        if not split:
            self.layout = f"fused x{self.workers}" + (" (gpu)" if asr_gpu else "")
            opts = dict(cpu, num_gpus=1) if asr_gpu else cpu
            n = min(self.workers, gpus) if asr_gpu else self.workers
            return [_Pool("pipeline", None, opts, n)]
        if asr_gpu:
            asr_opts, n_asr = {"num_cpus": 1, "num_gpus": 1, "runtime_env": {"env_vars": env}}, min(self.workers, gpus)
        else:
            asr_opts, n_asr = cpu, self.workers
        light = {"num_cpus": 1, "runtime_env": {"env_vars": env}}
        # the back pool: every stage not in the front or ASR pools, in stage-list order
        back = tuple(s.name for s in self.options.build(self.cfg) if s.name not in FRONT_STAGES + ASR_STAGES)
        self.layout = f"split: front x{self.workers}, asr x{n_asr}{' (gpu)' if asr_gpu else ''}, back x{self.workers}"
        return [_Pool("front", FRONT_STAGES, light, self.workers), _Pool("asr", ASR_STAGES, asr_opts, n_asr),
                _Pool("back", back, light, self.workers)]

    def _actor_env(self) -> dict:
        """Environment for the actors: the driver's models folder when it is the same machine (local Ray)
        or set explicitly; on a remote cluster the nodes' own ``QC_PIPELINE_MODELS_DIR`` / ./models apply."""
        from qc_pipeline.models import MODELS_DIR_ENV, models_dir

        if self.address and not os.environ.get(MODELS_DIR_ENV):
            return {}
        return {MODELS_DIR_ENV: str(models_dir())}

    def _new_actor(self, ray, pools: list[_Pool], k: int):
        pool = pools[k]
        cls = ray.remote(StageActor).options(max_restarts=0, max_task_retries=0, **pool.options)
        return cls.remote(self.cfg, pool.names, k == 0, k == len(pools) - 1, self.options.build, os.getcwd())

    def _check_resources(self, ray, pools: list[_Pool]) -> None:
        """Actors that can never be placed would wait forever: refuse the layout up front."""
        have = ray.cluster_resources()
        for res, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
            need = sum(p.size * p.options.get(key, 0) for p in pools)
            if need > have.get(res, 0):
                msg = (f"the Ray layout ({self.layout}) needs {need:g} {res} but the cluster has "
                       f"{have.get(res, 0):g}; lower --workers or asr.cpu_threads, or add nodes")
                if not self.address:
                    raise SetupError(msg)
                log.warning("%s (waiting for the autoscaler, if any)", msg)

    def _start(self, ray, pools: list[_Pool]) -> None:
        self._check_resources(ray, pools)
        for k, pool in enumerate(pools):
            pool.actors = [self._new_actor(ray, pools, k) for _ in range(pool.size)]
            pool.load = [0] * pool.size
        try:
            answers = ray.get([a.ready.remote() for p in pools for a in p.actors], timeout=self.options.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise SetupError(f"Ray workers did not start within {self.options.start_timeout_s:g} s (layout "
                             f"{self.layout}); check `ray status` for free resources, or lower --workers") from None
        except ray.exceptions.RayError as exc:
            raise SetupError(f"a Ray worker died while loading the models ({exc.__class__.__name__}); check "
                             "memory per node and the worker logs under /tmp/ray/session_latest/logs") from None
        problem = next((e for e, _ in answers if e), None)
        if problem:
            raise SetupError(f"a Ray worker could not set up the stage list: {problem}")
        names = [p.name for p in pools for _ in p.actors]
        for name, (_, ip) in zip(names, answers):
            nodes = self.actor_nodes.setdefault(name, {})
            nodes[ip] = nodes.get(ip, 0) + 1
        placed = "; ".join(f"{name} on " + ", ".join(f"{ip} x{n}" for ip, n in sorted(nodes.items()))
                           for name, nodes in self.actor_nodes.items())
        log.info("ray layout: %s (%s)", self.layout, placed)

    def _collect_peaks(self, ray, pools: list[_Pool]) -> None:
        for pool in pools:
            refs = [a.peak_rss_mib.remote() for a in pool.actors if a is not None]
            for ref in refs:
                try:
                    pid, mib = ray.get(ref, timeout=30)
                except Exception:  # a dead actor has no peak to report
                    continue
                if mib is not None:
                    pool.peaks[pid] = max(mib, pool.peaks.get(pid, 0.0))
            self.worker_peaks_mib[pool.name] = sorted(pool.peaks.values(), reverse=True)

    # -- the run ----------------------------------------------------------------------------
    def run(self, sources: Iterable[CallSource], on_result: Callable[[CallRecord], None],
            total: Optional[int] = None) -> None:
        from tqdm import tqdm

        ray = _import_ray()
        owns = self._init_ray(ray)
        pools: list[_Pool] = []
        bar = tqdm(total=total, unit="call", disable=not self.cfg.run.progress, dynamic_ncols=True)
        try:
            pools = self._plan(ray)
            self._start(ray, pools)
            self._loop(ray, pools, iter(sources), on_result, bar)
            self._collect_peaks(ray, pools)
        finally:
            bar.close()
            for pool in pools:
                for actor in pool.actors:
                    if actor is None:
                        continue
                    try:
                        ray.kill(actor, no_restart=True)
                    except Exception as exc:  # never mask the run's own error
                        log.debug("could not stop a ray worker: %s", exc)
            if owns:
                ray.shutdown()

    def _submit(self, ray, pools: list[_Pool], job: _Job, k: int, item) -> Any:
        pool = pools[k]
        idx = min((i for i, a in enumerate(pool.actors) if a is not None), key=pool.load.__getitem__)
        pool.load[idx] += 1
        job.pool, job.actor, job.handle, job.started, job.timed_out = k, idx, pool.actors[idx], None, False
        self._seq += 1
        job.seq = self._seq
        ok_ref, job.record_ref = job.handle.run.options(num_returns=2).remote(item)
        return ok_ref

    def _replace_dead(self, ray, pools: list[_Pool], job: _Job, why: str = "died") -> None:
        pool = pools[job.pool]
        if pool.actors[job.actor] is not job.handle:
            return  # already replaced on behalf of another call that was queued on it
        ray.kill(job.handle, no_restart=True)
        self._replace_actor(ray, pools, job.pool, job.actor, why)

    def _replace_actor(self, ray, pools: list[_Pool], k: int, idx: int, why: str) -> None:
        """Start a new actor in slot ``idx`` of pool ``k`` and wait until it has set up.

        A replacement can fail where the first actors did not (the dead actor's GPU memory not yet
        freed, say): it is tried ``replace_attempts`` times with a growing pause, then the run stops
        with a ``SetupError`` -- results so far are written and a re-run resumes -- rather than
        turning every call routed to a broken actor into an error row.
        """
        pool, opts = pools[k], self.options
        live = sum(a is not None for i, a in enumerate(pool.actors) if i != idx)
        if live and not self._room_for(ray, pool):
            pool.actors[idx] = None
            self.dropped_slots[pool.name] = self.dropped_slots.get(pool.name, 0) + 1
            log.warning("ray worker %d of pool %s %s and the cluster has no room for a replacement (a node "
                        "lost?); going on with %d worker(s) in that pool", idx, pool.name, why, live)
            return
        problem = ""
        for attempt in range(1, opts.replace_attempts + 1):
            new = self._new_actor(ray, pools, k)
            try:
                problem, _ = ray.get(new.ready.remote(), timeout=opts.start_timeout_s)
            except ray.exceptions.GetTimeoutError:
                problem = f"not ready within {opts.start_timeout_s:g} s"
            except ray.exceptions.RayError as exc:
                problem = f"died while loading the models ({exc.__class__.__name__})"
            if not problem:
                pool.actors[idx] = new
                pool.load[idx] = 0
                log.warning("ray worker %d of pool %s %s; started a replacement", idx, pool.name, why)
                return
            try:
                ray.kill(new, no_restart=True)
            except Exception as exc:  # never mask the setup problem
                log.debug("could not stop a failed ray worker: %s", exc)
            log.warning("replacement for ray worker %d of pool %s failed to start (try %d of %d): %s",
                        idx, pool.name, attempt, opts.replace_attempts, problem)
            if attempt < opts.replace_attempts:
                time.sleep(opts.replace_backoff_s * attempt)
        raise SetupError(f"a replacement Ray worker (pool {pool.name}) could not set up the stage list after "
                         f"{opts.replace_attempts} tries: {problem}; results so far are written, re-run the same "
                         "command to resume (check memory / GPU memory and the worker logs under "
                         "/tmp/ray/session_latest/logs)")

    def _room_for(self, ray, pool: _Pool) -> bool:
        """Whether the cluster has free resources for one more actor of ``pool``, waiting up to
        ``placement_wait_s`` for a dead actor's share to be given back."""
        need = {"CPU": pool.options.get("num_cpus", 0), "GPU": pool.options.get("num_gpus", 0)}
        deadline = time.monotonic() + self.options.placement_wait_s
        while True:
            # an actor fits on one node: free CPUs on one node and a free GPU on another are no room
            if any(all(free.get(res, 0) >= n for res, n in need.items() if n) for free in _free_per_node(ray)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    @staticmethod
    def _heads(in_flight: dict) -> dict[int, tuple[Any, _Job]]:
        """id(actor handle) -> (ref, job) of the call that actor is running: its oldest one in flight."""
        heads: dict[int, tuple[Any, _Job]] = {}
        for ref, job in in_flight.items():
            cur = heads.get(id(job.handle))
            if cur is None or job.seq < cur[1].seq:
                heads[id(job.handle)] = (ref, job)
        return heads

    def _wait_timeout(self, in_flight: dict, limit: float) -> Optional[float]:
        """Seconds until the first running call is overdue; None without a limit.

        A call's clock starts when the driver first sees it at the head of its actor's queue (at
        dispatch to an idle actor, else when the previous call's result was taken): never earlier
        than it really started, so queued calls are not charged for the call ahead of them.
        """
        if not limit:
            return None
        now, deadline = time.monotonic(), None
        for _, job in self._heads(in_flight).values():
            if job.timed_out:
                continue  # being killed; its queue comes back as actor errors
            if job.started is None:
                job.started = now
            deadline = job.started + limit if deadline is None else min(deadline, job.started + limit)
        return None if deadline is None else max(0.05, deadline - now)

    def _kill_overdue(self, ray, pools: list[_Pool], in_flight: dict, dead: dict, limit: float) -> None:
        """Kill and replace every actor whose running call is past ``limit``; the loop then sees
        the call (``timed_out``) and those queued behind it come back as actor errors."""
        now = time.monotonic()
        for ref, job in self._heads(in_flight).values():
            if job.timed_out or job.started is None or now - job.started < limit:
                continue
            if pools[job.pool].actors[job.actor] is not job.handle or ray.wait([ref], timeout=0)[0]:
                continue  # already dead and replaced, or it just finished: the loop handles it
            log.warning("call %s still running after %.0f s (run.call_timeout_s); killing ray worker %d of pool %s",
                        job.source.call_id, limit, job.actor, pools[job.pool].name)
            job.timed_out = True
            dead[id(job.handle)] = (job.handle, job.seq)  # the charged call is this one; none behind it
            self._replace_dead(ray, pools, job, why="was killed (call timeout)")

    @staticmethod
    def _running_seq(ray, in_flight: dict, job: _Job) -> int:
        """The call a dead actor was running: its oldest call that did not finish (actors run in order)."""
        seqs = [job.seq]
        for ref, other in in_flight.items():
            if other.handle is not job.handle:
                continue
            if ray.wait([ref], timeout=0)[0]:
                try:
                    ray.get(ref)
                    continue  # finished before the death; not processed by the loop yet
                except Exception:
                    pass
            seqs.append(other.seq)
        return min(seqs)

    def _loop(self, ray, pools: list[_Pool], it, on_result, bar) -> None:
        from ray.exceptions import ObjectLostError, RayActorError, WorkerCrashedError

        window = sum(p.size for p in pools) * self.options.in_flight_per_actor
        in_flight: dict[Any, _Job] = {}
        retry: list[_Job] = []
        # id(dead actor handle) -> (handle, seq of the call it was running when it died)
        dead: dict[int, tuple[Any, int]] = {}
        last = len(pools) - 1
        limit = self.cfg.run.call_timeout_s

        def finish(rec: CallRecord) -> None:
            on_result(rec)
            bar.update(1)

        while True:
            while len(in_flight) < window:
                job = retry.pop() if retry else None
                if job is None:
                    src = next(it, None)
                    if src is None:
                        break
                    job = _Job(src, 0, 0, None, 1)
                in_flight[self._submit(ray, pools, job, 0, job.source)] = job
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=self._wait_timeout(in_flight, limit))
            if not ready:
                self._kill_overdue(ray, pools, in_flight, dead, limit)
                continue
            ref = ready[0]
            job = in_flight.pop(ref)
            pool = pools[job.pool]
            if pool.actors[job.actor] is job.handle:  # a replacement starts with its own count
                pool.load[job.actor] = max(0, pool.load[job.actor] - 1)
            try:
                ok = ray.get(ref)
                if ok and job.pool < last:  # forward the record reference; the driver never fetches audio
                    in_flight[self._submit(ray, pools, job, job.pool + 1, job.record_ref)] = job
                    continue
                finish(ray.get(job.record_ref))
            except ObjectLostError as exc:
                # an intermediate record (the previous pool's output) is gone, e.g. with its node; the
                # actor that reported it is healthy: run the call again from the first pool
                if job.lost < self.options.max_attempts:
                    log.warning("call %s: an intermediate result was lost (%s); resubmitting from the first pool",
                                job.source.call_id, exc.__class__.__name__)
                    retry.append(_Job(job.source, 0, 0, None, job.attempt, lost=job.lost + 1))
                else:
                    finish(CallRecord(source=job.source).failed(
                        Reason.WORKER_CRASHED, f"ray lost this call's intermediate results {job.lost + 1} times "
                                               f"(a node or object store failed; last: {exc.__class__.__name__})"))
            except (RayActorError, WorkerCrashedError) as exc:
                if job.timed_out:  # its actor was killed and replaced by _kill_overdue; no retry
                    finish(CallRecord(source=job.source).failed(
                        Reason.CALL_TIMEOUT, f"still running after {limit:.0f} s (run.call_timeout_s); the ray "
                                             "worker was killed. Check the file, or raise the limit for very long calls"))
                    continue
                self._replace_dead(ray, pools, job)
                if id(job.handle) not in dead:
                    dead[id(job.handle)] = (job.handle, self._running_seq(ray, in_flight, job))
                # only the running call is charged an attempt; calls merely queued behind it just go again
                charged = dead[id(job.handle)][1] == job.seq
                if not charged or job.attempt < self.options.max_attempts:
                    log.warning("call %s: ray worker died (%s); resubmitting", job.source.call_id,
                                exc.__class__.__name__)
                    retry.append(_Job(job.source, 0, 0, None, job.attempt + charged))
                else:
                    finish(CallRecord(source=job.source).failed(
                        Reason.WORKER_CRASHED, f"ray worker died {job.attempt} times while processing this call "
                                               f"(killed or out of memory; last: {exc.__class__.__name__})"))
            except ray.exceptions.RayTaskError as exc:  # an exception escaped the actor method
                finish(CallRecord(source=job.source).failed(
                    Reason.INTERNAL_ERROR, f"ray task failed: {str(exc.cause or exc)[:500]}"))


__all__ = ["RayExecutor", "RayOptions", "StageActor", "vm_hwm_mib", "INSTALL_HINT"]
