"""Ray executor: the same stage list as the local engine, on Ray actors (layouts: :mod:`.layout`).

Groups of ``run.calls_per_task`` calls go to the actors and their records stream back to the driver,
which calls ``on_result`` -- so ``run_batch`` keeps owning the sinks, resume markers and run
statistics, identical across engines.  A failure inside a stage becomes an error row
(``Pipeline.run_many`` semantics).  Dead actors, calls past ``run.call_timeout_s`` and lost
intermediate results follow the shared :class:`~qc_pipeline.executors.ledger.Ledger`; a dead or
killed actor is replaced, and a replacement that cannot set up (after a few tries) stops the run with
a ``SetupError``.  When the cluster has no room left for a replacement (its node is gone), the pool
goes on one actor short instead, as long as it has another live actor.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from qc_pipeline.config import PipelineConfig
from qc_pipeline.errors import SetupError
from qc_pipeline.executors.base import Feeder, calls_per_task, resolve_workers, worker_config, worker_env
from qc_pipeline.executors.ledger import Group, Ledger, Task, Verdict
from qc_pipeline.executors.ray.actors import StageActor
from qc_pipeline.executors.ray.layout import Pool, plan
from qc_pipeline.pipeline import build_stages
from qc_pipeline.records import CallRecord, CallSource
from qc_pipeline.stages.base import Stage

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'qc-pipeline[ray]'"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SetupError(f"the Ray engine needs Ray: {INSTALL_HINT} (or use --engine local)") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine lays out and drives its actors.

    ``split``: None = split only when ASR runs on GPUs (see :mod:`.layout`); True/False forces it.
    ``in_flight_per_actor``: tasks queued per actor; bounds the calls in flight (backpressure).
    ``max_attempts``: deaths a call may be running at before it is written as ``worker_crashed``.
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


@dataclass
class _Job:
    """A group of calls on its way through the pools."""

    calls: Group
    pool: int = 0
    slot: int = 0
    key: int = -1           # ledger key of the actor it is on
    task: Optional[Task] = None
    records_ref: Any = None


class RayExecutor:
    """``run(sources, on_result, total)`` on Ray actors; same contract as ``LocalExecutor``.

    ``address``: a Ray cluster to connect to; default ``$RAY_ADDRESS``, else a local Ray started
    (and shut down) for this run.  An already initialised Ray session is reused and left running.
    """

    def __init__(self, cfg: PipelineConfig, workers: Optional[int] = None, address: Optional[str] = None,
                 options: Optional[RayOptions] = None) -> None:
        _import_ray()  # fail before any input is read
        self.workers = resolve_workers(cfg, workers)
        self.cfg = worker_config(cfg, self.workers)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.options = options or RayOptions()
        if min(self.options.in_flight_per_actor, self.options.max_attempts, self.options.replace_attempts) < 1:
            raise SetupError("RayOptions: in_flight_per_actor, max_attempts and replace_attempts must be >= 1")
        # per pool: peak RSS (MiB) of every actor that ran, filled at the end of run()
        self.worker_peaks_mib: dict[str, list[float]] = {}
        self.layout = ""
        self.actor_nodes: dict[str, dict[str, int]] = {}   # pool -> node IP -> actors at start (not replacements)
        self.dropped_slots: dict[str, int] = {}   # pool -> actors not replaced (no room left in the cluster)
        self._keys = itertools.count()

    # -- cluster and actors -----------------------------------------------------------------
    def _init_ray(self, ray) -> bool:
        """Start or connect to Ray; True when this run owns the session (and shuts it down)."""
        if ray.is_initialized():
            return False
        kwargs: dict = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address:
            kwargs["address"] = self.address
        else:
            # logical CPUs for Ray's scheduler: enough for the largest layout (split: front + asr + back)
            per_actor = max(1, self.cfg.asr.cpu_threads)
            need = self.workers * per_actor + (2 * self.workers if self.options.split is not False else 0)
            kwargs.update(include_dashboard=False, num_cpus=max(os.cpu_count() or 1, need))
        try:
            ray.init(**kwargs)
        except Exception as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise SetupError(f"cannot start {where} ({exc.__class__.__name__}: {exc}); check RAY_ADDRESS / "
                             "`ray status`, or use --engine local") from None
        return True

    def _actor_env(self) -> dict:
        """Environment for the actors: :func:`worker_env`, and the driver's models folder when it is the
        same machine (local Ray) or set explicitly; on a remote cluster the nodes' own
        ``QC_PIPELINE_MODELS_DIR`` / ./models apply."""
        from qc_pipeline.models import MODELS_DIR_ENV, models_dir

        env = worker_env(self.cfg.asr.cpu_threads)
        if not self.address or os.environ.get(MODELS_DIR_ENV):
            env[MODELS_DIR_ENV] = str(models_dir())
        return env

    def _new_actor(self, ray, pools: list[Pool], k: int):
        pool = pools[k]
        cls = ray.remote(StageActor).options(max_restarts=0, max_task_retries=0, **pool.options)
        return cls.remote(self.cfg, pool.names, k == 0, k == len(pools) - 1, self.options.build, os.getcwd())

    def _check_resources(self, ray, pools: list[Pool]) -> None:
        """Actors that can never be placed would wait forever: refuse the layout up front."""
        have = ray.cluster_resources()
        for res, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
            need = sum(p.size * p.options.get(key, 0) for p in pools)
            if need > have.get(res, 0) + 1e-9:  # float shares (1/run.ray_actors_per_gpu): guard should pools ever add up
                msg = (f"the Ray layout ({self.layout}) needs {need:g} {res} but the cluster has "
                       f"{have.get(res, 0):g}; lower --workers or asr.cpu_threads, or add nodes")
                if not self.address:
                    raise SetupError(msg)
                log.warning("%s (waiting for the autoscaler, if any)", msg)

    def _start(self, ray, pools: list[Pool]) -> None:
        self._check_resources(ray, pools)
        for k, pool in enumerate(pools):
            pool.actors = [self._new_actor(ray, pools, k) for _ in range(pool.size)]
            pool.keys = [next(self._keys) for _ in range(pool.size)]
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

    def _collect_peaks(self, ray, pools: list[Pool]) -> None:
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

    def _replace(self, ray, pools: list[Pool], k: int, slot: int, key: int, why: str) -> None:
        """Kill the actor ``key`` in slot ``slot`` of pool ``k`` (if it is still there) and start a new one.

        A replacement can fail where the first actors did not (the dead actor's GPU memory not yet
        freed, say): it is tried ``replace_attempts`` times with a growing pause, then the run stops
        with a ``SetupError`` -- results so far are written and a re-run resumes -- rather than
        turning every call routed to a broken actor into an error row.
        """
        pool, opts = pools[k], self.options
        if pool.keys[slot] != key or pool.actors[slot] is None:
            return  # already replaced
        try:
            ray.kill(pool.actors[slot], no_restart=True)
        except Exception as exc:  # already gone
            log.debug("could not stop a ray worker: %s", exc)
        live = sum(a is not None for i, a in enumerate(pool.actors) if i != slot)
        if live and not self._room_for(ray, pool):
            pool.actors[slot] = None
            self.dropped_slots[pool.name] = self.dropped_slots.get(pool.name, 0) + 1
            log.warning("ray worker %d of pool %s %s and the cluster has no room for a replacement (a node "
                        "lost?); going on with %d worker(s) in that pool", slot, pool.name, why, live)
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
                pool.actors[slot], pool.keys[slot], pool.load[slot] = new, next(self._keys), 0
                log.warning("ray worker %d of pool %s %s; started a replacement", slot, pool.name, why)
                return
            try:
                ray.kill(new, no_restart=True)
            except Exception as exc:  # never mask the setup problem
                log.debug("could not stop a failed ray worker: %s", exc)
            log.warning("replacement for ray worker %d of pool %s failed to start (try %d of %d): %s",
                        slot, pool.name, attempt, opts.replace_attempts, problem)
            if attempt < opts.replace_attempts:
                time.sleep(opts.replace_backoff_s * attempt)
        raise SetupError(f"a replacement Ray worker (pool {pool.name}) could not set up the stage list after "
                         f"{opts.replace_attempts} tries: {problem}; results so far are written, re-run the same "
                         "command to resume (check memory / GPU memory and the worker logs under "
                         "/tmp/ray/session_latest/logs)")

    def _room_for(self, ray, pool: Pool) -> bool:
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

    # -- the run ----------------------------------------------------------------------------
    def run(self, sources: Iterable[CallSource], on_result: Callable[[CallRecord], None],
            total: Optional[int] = None) -> None:
        from tqdm import tqdm

        ray = _import_ray()
        owns = self._init_ray(ray)
        pools: list[Pool] = []
        bar = tqdm(total=total, unit="call", disable=not self.cfg.run.progress, dynamic_ncols=True)

        def finish(rec: CallRecord) -> None:
            on_result(rec)
            bar.update(1)

        try:
            self.layout, pools = plan(self.cfg, self.workers, self.options.split,
                                      int(ray.cluster_resources().get("GPU", 0)), self._actor_env(), self.options.build)
            self._start(ray, pools)
            gpu = any(p.options.get("num_gpus") for p in pools)  # the split layout's GPU pool batches a group
            feeder = Feeder(sources, calls_per_task(self.cfg, gpu), pools[0].size, total)
            _Run(self, ray, pools, feeder, finish).loop()
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


class _Run:
    """One run's driver loop: submit groups, collect results, apply the ledger's verdicts."""

    def __init__(self, ex: RayExecutor, ray, pools: list[Pool], feeder: Feeder,
                 finish: Callable[[CallRecord], None]) -> None:
        self.ex, self.ray, self.pools, self.feeder, self.finish = ex, ray, pools, feeder, finish
        self.ledger = Ledger(call_timeout_s=ex.cfg.run.call_timeout_s, max_attempts=ex.options.max_attempts)
        self.in_flight: dict[Any, _Job] = {}   # ok-flag ref -> job

    def loop(self) -> None:
        window = sum(p.size for p in self.pools) * self.ex.options.in_flight_per_actor
        while True:
            while len(self.in_flight) < window:
                group = self.feeder.next()
                if group is None:
                    break
                self._submit(_Job(group), 0, list(group))
            if not self.in_flight:
                return
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=self.ledger.wait_s())
            if not ready:
                self._kill_overdue()
                continue
            self._collect(ready[0], self.in_flight.pop(ready[0]))

    def _submit(self, job: _Job, k: int, item) -> None:
        pool = self.pools[k]
        slot = min((i for i, a in enumerate(pool.actors) if a is not None), key=pool.load.__getitem__)
        pool.load[slot] += 1
        job.pool, job.slot, job.key = k, slot, pool.keys[slot]
        job.task = self.ledger.assign(job.key, job.calls)
        ok_ref, job.records_ref = pool.actors[slot].run.options(num_returns=2).remote(item)
        self.in_flight[ok_ref] = job

    def _apply(self, verdict: Verdict) -> None:
        for rec in verdict.failed:
            log.warning("call %s written as %s", rec.call_id, rec.error_reason)
            self.finish(rec)
        self.feeder.retry(verdict.retry)

    def _collect(self, ref, job: _Job) -> None:
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

        pool = self.pools[job.pool]
        if pool.keys[job.slot] == job.key:  # a replacement starts with its own count
            pool.load[job.slot] = max(0, pool.load[job.slot] - 1)
        try:
            ok = self.ray.get(ref)
            if ok and job.pool < len(self.pools) - 1:  # forward the records reference; the driver never fetches audio
                self.ledger.finished(job.key, job.task)
                self._submit(job, job.pool + 1, job.records_ref)
                return
            records = self.ray.get(job.records_ref)
        except ObjectLostError as exc:
            # an intermediate record (the previous pool's output) is gone, e.g. with its node; the actor
            # that reported it is healthy: the calls go again from the first pool
            log.warning("call(s) %s: an intermediate result was lost (%s)", _ids(job), exc.__class__.__name__)
            self._apply(self.ledger.lost(job.key, job.task, exc.__class__.__name__))
            return
        except (RayActorError, WorkerCrashedError) as exc:
            self._actor_died(job, f"{exc.__class__.__name__}")
            return
        except RayTaskError as exc:  # an exception escaped the actor method
            self._apply(self.ledger.errored(job.key, job.task, f"ray task failed: {exc.cause or exc}"))
            return
        self.ledger.finished(job.key, job.task)
        for rec in records:
            self.finish(rec)

    def _actor_died(self, job: _Job, how: str) -> None:
        """The actor holding ``job`` is gone: take the results it finished before it died, then let the
        ledger settle everything else it held, and replace it."""
        mine = [(r, j) for r, j in self.in_flight.items() if j.key == job.key]
        for r, _job in mine:
            if self.ray.wait([r], timeout=0)[0]:
                try:
                    self.ray.get(r)
                except Exception:
                    continue
                self._collect(r, self.in_flight.pop(r))
        for r in [r for r, j in self.in_flight.items() if j.key == job.key]:
            self.in_flight.pop(r)
        log.warning("ray worker %d of pool %s died (%s) holding %s", job.slot, self.pools[job.pool].name, how, _ids(job))
        self.ex._replace(self.ray, self.pools, job.pool, job.slot, job.key, f"died ({how})")
        self._apply(self.ledger.died(job.key, how))

    def _kill_overdue(self) -> None:
        for _worker, task in self.ledger.overdue():
            found = next(((r, j) for r, j in self.in_flight.items() if j.task is task), None)
            if found is None or self.ray.wait([found[0]], timeout=0)[0]:
                continue  # it just finished: the loop collects it
            ref, job = found
            log.warning("call(s) %s still running after %.0f s (run.call_timeout_s); killing ray worker %d of pool %s",
                        _ids(job), self.ledger.call_timeout_s * len(job.calls), job.slot, self.pools[job.pool].name)
            self.ledger.mark_timed_out(task)
            self.in_flight.pop(ref)
            self._actor_died(job, "killed (call timeout)")


def _ids(job: _Job) -> str:
    return ", ".join(c.call_id for c in job.calls)
