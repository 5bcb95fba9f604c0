"""The Ray engine on a local Ray: same Parquet content as the local engine, resume across engines,
error rows for bad inputs and for dead workers, and ``qc-pipeline run --engine ray``."""

import functools
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from qc_pipeline.config import load_config
from qc_pipeline.errors import SetupError
from qc_pipeline.pipeline import build_stages
from qc_pipeline.records import CallRecord
from qc_pipeline.runner import run_batch
from qc_pipeline.sinks import read_table
from qc_pipeline.stages.base import Stage

CFG = load_config(overrides=("run.progress=false",))
# Columns that legitimately differ between two runs of the same inputs.
VOLATILE = {"run_id", "processed_at", "stage_seconds"}
SORT_KEYS = {"sessions": ("call_id",), "utterances": ("call_id", "turn_index"), "scores": ("call_id",),
             "item_results": ("call_id", "item_id")}


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (start-up is ~5-10 s); executors reuse it and leave it running."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def content(out) -> dict:
    tables = {}
    for name, keys in SORT_KEYS.items():
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_table(out, name).to_pylist()]
        tables[name] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in keys))
    return tables


def ray_executor(workers=2, **options):
    from qc_pipeline.executors.ray import RayExecutor, RayOptions

    return RayExecutor(CFG, workers, options=RayOptions(**options))


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory, samples):
    """Chat sessions plus bad rows: a text file named .wav, a manifest row with a missing file / no path."""
    inp = tmp_path_factory.mktemp("mixed")
    shutil.copy(samples / "chats" / "jddc_3.jsonl", inp / "chats.jsonl")
    (inp / "notes.wav").write_text("not audio at all\n" * 100, encoding="utf-8")
    (inp / "manifest.csv").write_text("call_id,path\nmissing-001,does_not_exist.wav\nno-path-002,\n", "utf-8")
    return [str(inp / "chats.jsonl"), str(inp / "notes.wav"), str(inp / "manifest.csv")]


@pytest.fixture(scope="module")
def local_mixed(tmp_path_factory, mixed_inputs, whisper_base):
    out = tmp_path_factory.mktemp("local_mixed")
    stats = run_batch(mixed_inputs, str(out), CFG, workers=1)
    return out, stats


# -- no model needed -----------------------------------------------------------------------------
def test_missing_ray_is_a_setup_error(monkeypatch):
    from qc_pipeline.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SetupError, match=r"pip install 'qc-pipeline\[ray\]'"):
        make_executor("ray", CFG, 2)


def test_calls_per_task_auto_groups_only_where_asr_runs_on_a_gpu():
    from qc_pipeline.executors.base import calls_per_task

    assert (calls_per_task(CFG, gpu=True), calls_per_task(CFG, gpu=False)) == (8, 1)
    assert calls_per_task(load_config(overrides=("asr.batch_size=0",)), gpu=True) == 1   # sequential decoding
    assert calls_per_task(load_config(overrides=("run.calls_per_task=3",)), gpu=False) == 3


def test_gpu_layout_names_its_actor_count_and_refuses_a_gpu_it_cannot_use(monkeypatch):
    """One GPU: the fused layout runs one GPU actor (and says so); an actor Ray gives a GPU that CTranslate2
    cannot use (no cuBLAS 12, ``asr.device: auto``) is a setup error naming the fix, not a silent CPU run."""
    import ctranslate2

    from qc_pipeline import gpu
    from qc_pipeline.executors.ray.actors import unusable_gpu
    from qc_pipeline.executors.ray.layout import plan

    layout, pools = plan(CFG, 4, False, 1, {}, build_stages)
    assert (layout, [p.size for p in pools], pools[0].options["num_gpus"]) == ("fused x1 (gpu)", [1], 1)
    # run.ray_actors_per_gpu: that many GPU actors share each GPU, never more than the workers
    shared = load_config(overrides=("run.ray_actors_per_gpu=4",))
    for workers, split, expected in ((4, False, "fused x4 (gpu)"), (2, False, "fused x2 (gpu)"),
                                     (8, True, "split: front x8, asr x4 (gpu), back x8")):
        layout, pools = plan(shared, workers, split, 1, {}, build_stages)
        gpu_pools = [p for p in pools if p.options.get("num_gpus")]
        assert layout == expected and [p.options["num_gpus"] for p in gpu_pools] == [0.25]
        assert sum(p.size * p.options["num_gpus"] for p in gpu_pools) <= 1
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    for cublas, expected in ((True, None), (False, "pip install 'qc-pipeline[gpu]'")):
        monkeypatch.setattr(gpu, "cublas_loadable", lambda cublas=cublas: cublas)
        why = unusable_gpu(CFG, [0])
        assert why is None if expected is None else expected in why
    assert unusable_gpu(CFG, []) is None  # a CPU actor: nothing to check


def test_unknown_engine_is_a_setup_error(tmp_path):
    with pytest.raises(SetupError, match="unknown engine 'spark'; use one of: local, ray"):
        run_batch([], str(tmp_path), CFG, engine="spark")


# -- local Ray ---------------------------------------------------------------------------------------
@pytest.mark.model
@pytest.mark.parametrize("split", [None, True], ids=["engine-ray", "split-1"])
def test_ray_matches_local_on_chats_and_bad_inputs(ray_session, tmp_path, mixed_inputs, local_mixed, split):
    local_out, local_stats = local_mixed
    if split:  # chats and input errors pass through the front/asr pools untouched
        stats = run_batch(mixed_inputs, str(tmp_path), CFG, executor=ray_executor(1, split=True))
    else:
        stats = run_batch(mixed_inputs, str(tmp_path), CFG, engine="ray", workers=2)
    assert (stats.ok, stats.chat_sessions, dict(stats.failed)) == (3, 3, dict(local_stats.failed))
    assert dict(stats.failed) == {"not_audio": 1, "file_not_found": 1, "bad_manifest_row": 1}
    got, want = content(tmp_path), content(local_out)
    assert got == want
    bad = {r["call_id"]: r["error_reason"] for r in got["sessions"] if r["status"] == "failed"}
    assert bad == {"notes": "not_audio", "missing-001": "file_not_found", "no-path-002": "bad_manifest_row"}
    assert len(got["scores"]) == 3 and len(got["utterances"]) > 10


def test_layout_that_cannot_be_placed_is_a_setup_error(ray_session):
    ex = ray_executor(8, split=False)  # 8 one-CPU actors on a 4-CPU local Ray would wait forever
    with pytest.raises(SetupError, match="needs 8 CPU but the cluster has 4; lower --workers"):
        ex.run(iter([]), lambda rec: None)


@pytest.mark.model
def test_resume_across_engines(ray_session, tmp_path, samples, whisper_base):
    chats = (samples / "chats" / "jddc_3.jsonl").read_text("utf-8").splitlines()
    part = tmp_path / "part.jsonl"
    part.write_text(chats[0] + "\n", "utf-8")
    out = tmp_path / "out"
    first = run_batch([str(part)], str(out), CFG, engine="local", workers=1)
    assert first.ok == 1
    second = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(out), CFG, engine="ray", workers=2)
    assert (second.skipped_done, second.ok) == (1, 2)
    third = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(out), CFG, engine="ray", workers=2)
    assert (third.skipped_done, third.ok) == (3, 0)
    ids = read_table(out, "sessions").column("call_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3
    score_ids = read_table(out, "scores").column("call_id").to_pylist()
    assert sorted(score_ids) == sorted(ids)


class CrashStage(Stage):
    """Kills its worker process on chosen calls: ``always`` every time, ``once`` on the first try only."""

    name = "crash"
    kinds = ("chat",)

    def __init__(self, always: str, once: str, marker_dir: str) -> None:
        self.always, self.once, self.marker = always, once, Path(marker_dir) / "crashed-once"

    def process(self, record: CallRecord) -> CallRecord:
        if record.call_id == self.always:
            os._exit(1)
        if record.call_id == self.once and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        return record


def build_with_crash(cfg, *, always, once, marker_dir):
    return build_stages(cfg) + [CrashStage(always, once, marker_dir)]


@pytest.mark.model
def test_dead_worker_is_resubmitted_once_then_an_error_row(ray_session, tmp_path, samples, whisper_base):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not importable in workers
    ids = chat_ids(samples)
    build = functools.partial(build_with_crash, always=ids[0], once=ids[1], marker_dir=str(tmp_path))
    stats = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(tmp_path / "out"), CFG,
                      executor=ray_executor(2, build=build))
    rows = {r["call_id"]: r for r in read_table(tmp_path / "out", "sessions").to_pylist()}
    assert len(rows) == 3 and (tmp_path / "crashed-once").exists()
    assert rows[ids[0]]["status"] == "failed" and rows[ids[0]]["error_reason"] == "worker_crashed"
    assert "worker died 2 times" in rows[ids[0]]["error_detail"]
    assert rows[ids[1]]["status"] == rows[ids[2]]["status"] == "ok"
    assert (stats.ok, dict(stats.failed)) == (2, {"worker_crashed": 1})


@pytest.mark.model
def test_cli_engine_ray(ray_session, tmp_path, samples, whisper_base):
    from qc_pipeline.cli import main

    out = tmp_path / "out"
    rc = main(["run", str(samples / "chats" / "jddc_3.jsonl"), "--out", str(out), "--engine", "ray",
               "--workers", "2", "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "_runs" / "last_summary.json").read_text("utf-8"))
    assert (summary["ok"], summary["chat_sessions"], summary["scored_sessions"]) == (3, 3, 3)


@pytest.fixture(scope="module")
def local_calls(tmp_path_factory, samples, whisper_base):
    out = tmp_path_factory.mktemp("local_calls")
    stats = run_batch([str(samples / "calls" / "manifest.csv")], str(out), CFG, workers=1)
    assert stats.ok == 2
    return out


@pytest.mark.model
@pytest.mark.parametrize("workers,split", [(2, False), (1, True)], ids=["fused-2", "split-1"])
def test_ray_matches_local_on_audio(ray_session, tmp_path, samples, local_calls, workers, split):
    ex = ray_executor(workers, split=split)
    stats = run_batch([str(samples / "calls" / "manifest.csv")], str(tmp_path), CFG, executor=ex)
    assert stats.ok == 2 and stats.audio_s > 100
    assert ex.layout.startswith("split" if split else "fused")
    assert set(ex.worker_peaks_mib) == ({"front", "asr", "back"} if split else {"pipeline"})
    assert all(v > 50 for peaks in ex.worker_peaks_mib.values() for v in peaks)
    # every actor reported the node it was placed on (one local node here)
    assert set(ex.actor_nodes) == set(ex.worker_peaks_mib)
    assert sum(n for nodes in ex.actor_nodes.values() for n in nodes.values()) == (workers if not split else 3)
    got, want = content(tmp_path), content(local_calls)
    assert [r["text"] for r in got["utterances"]] == [r["text"] for r in want["utterances"]]
    assert got == want
    stage_names = {k for k, _ in stats.stage_s.items()}
    assert {"decode", "segment", "asr", "roles", "score"} <= stage_names


# -- call timeout, replacements that cannot set up, lost intermediate results --------------------------
class HangStage(Stage):
    """Hangs (well past any test's ``run.call_timeout_s``) on one call; ``pause`` seconds on the others."""

    name = "hang"
    kinds = ("chat",)

    def __init__(self, hang: str, pause: float) -> None:
        self.hang, self.pause = hang, pause

    def process(self, record: CallRecord) -> CallRecord:
        import time

        time.sleep(120 if record.call_id == self.hang else self.pause)
        return record


def build_with_hang(cfg, *, hang, pause):
    return build_stages(cfg) + [HangStage(hang, pause)]


class NoSetupAfterCrash(Stage):
    """Kills its worker on one call; from then on every new worker fails ``setup`` (a GPU not yet freed)."""

    name = "crash_then_no_setup"
    kinds = ("chat",)

    def __init__(self, crash: str, marker_dir: str) -> None:
        self.crash, self.marker = crash, Path(marker_dir) / "crashed"

    def setup(self) -> None:
        if self.marker.exists():
            raise RuntimeError("CUDA out of memory (the dead worker's memory is not freed yet)")

    def process(self, record: CallRecord) -> CallRecord:
        if record.call_id == self.crash:
            self.marker.touch()
            os._exit(1)
        return record


def build_with_no_setup_after_crash(cfg, *, crash, marker_dir):
    return build_stages(cfg) + [NoSetupAfterCrash(crash, marker_dir)]


def chat_ids(samples) -> list[str]:
    lines = (samples / "chats" / "jddc_3.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line)["dialogue_id"] for line in lines]


@pytest.mark.model
def test_hung_call_is_killed_as_call_timeout_and_queued_calls_go_again(ray_session, tmp_path, samples, whisper_base):
    import time

    import ray.cloudpickle

    from qc_pipeline.executors.ray import RayExecutor, RayOptions

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ids = chat_ids(samples)
    cfg = load_config(overrides=("run.progress=false", "run.call_timeout_s=3"))
    # two actors, two calls each in flight: ids[0] hangs on actor 0 with ids[2] queued behind it
    build = functools.partial(build_with_hang, hang=ids[0], pause=0.0)
    ex = RayExecutor(cfg, 2, options=RayOptions(in_flight_per_actor=2, build=build))
    t0 = time.monotonic()
    stats = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(tmp_path / "out"), cfg, executor=ex)
    assert time.monotonic() - t0 < 100  # the hang (120 s) did not hold up the batch
    sessions = read_table(tmp_path / "out", "sessions").to_pylist()
    assert sorted(r["call_id"] for r in sessions) == sorted(ids)  # every call exactly once
    rows = {r["call_id"]: r for r in sessions}
    assert rows[ids[0]]["status"] == "failed" and rows[ids[0]]["error_reason"] == "call_timeout"
    assert "run.call_timeout_s" in rows[ids[0]]["error_detail"]
    assert rows[ids[1]]["status"] == rows[ids[2]]["status"] == "ok"
    assert (stats.ok, dict(stats.failed)) == (2, {"call_timeout": 1})


@pytest.mark.model
def test_call_timeout_clock_starts_when_the_call_runs_not_when_queued(ray_session, tmp_path, samples, whisper_base):
    import ray.cloudpickle

    from qc_pipeline.executors.ray import RayExecutor, RayOptions

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = load_config(overrides=("run.progress=false", "run.call_timeout_s=8"))
    # one actor, all three calls queued on it, 5 s each: a clock started at dispatch would time out
    # the second and third (10 s, 15 s after dispatch); each runs well under the 8 s limit
    build = functools.partial(build_with_hang, hang="", pause=5.0)
    ex = RayExecutor(cfg, 1, options=RayOptions(in_flight_per_actor=3, build=build))
    stats = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(tmp_path / "out"), cfg, executor=ex)
    assert (stats.ok, dict(stats.failed)) == (3, {})


@pytest.mark.model
def test_replacement_that_cannot_set_up_stops_the_run_and_a_rerun_resumes(ray_session, tmp_path, samples,
                                                                          whisper_base):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ids = chat_ids(samples)
    out = tmp_path / "out"
    build = functools.partial(build_with_no_setup_after_crash, crash=ids[1], marker_dir=str(tmp_path))
    ex = ray_executor(1, in_flight_per_actor=1, replace_attempts=2, replace_backoff_s=0.1, build=build)
    with pytest.raises(SetupError, match=r"replacement Ray worker .* after 2 tries: .*CUDA out of memory"):
        run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(out), CFG, executor=ex)
    rows = read_table(out, "sessions").to_pylist()  # what finished before the stop is committed
    assert [(r["call_id"], r["status"]) for r in rows] == [(ids[0], "ok")]
    again = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(out), CFG, engine="ray", workers=1)
    assert (again.skipped_done, again.ok, dict(again.failed)) == (1, 2, {})


@pytest.mark.model
def test_lost_intermediate_result_goes_again_from_the_first_pool(ray_session, tmp_path, samples, whisper_base,
                                                                 monkeypatch):
    import ray

    from qc_pipeline.executors.ray import RayExecutor, RayOptions

    @ray.remote
    def lost():
        raise ray.exceptions.ObjectLostError("ff" * 28, None, "test")

    from qc_pipeline.executors.ray.executor import _Run

    seen = {"lost": 0, "replaced": 0}
    submit, replace = _Run._submit, RayExecutor._replace

    def loses_first_forward(self, job, k, item):
        """The first group forwarded to the ASR pool comes back lost (as when its node died)."""
        submit(self, job, k, item)
        if k == 1 and not seen["lost"]:
            seen["lost"] += 1
            ref = next(r for r, j in self.in_flight.items() if j is job)
            self.in_flight[lost.remote()] = self.in_flight.pop(ref)

    def counting_replace(self, *args, **kwargs):
        seen["replaced"] += 1
        return replace(self, *args, **kwargs)

    monkeypatch.setattr(_Run, "_submit", loses_first_forward)
    monkeypatch.setattr(RayExecutor, "_replace", counting_replace)
    ex = RayExecutor(CFG, 1, options=RayOptions(split=True))
    stats = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(tmp_path / "out"), CFG, executor=ex)
    assert seen == {"lost": 1, "replaced": 0}  # no healthy actor was killed
    ids = read_table(tmp_path / "out", "sessions").column("call_id").to_pylist()
    assert sorted(ids) == sorted(chat_ids(samples)) and (stats.ok, dict(stats.failed)) == (3, {})


# -- issue 11, item 4: output cannot depend on where a call ran --------------------------------------
class ThreadProbe(Stage):
    """Records, as a flag, the thread counts the numeric libraries would use in this process, and the glibc
    tunables the process was started with (its environment at exec, which the C library read)."""

    name = "thread_probe"
    kinds = ("chat",)

    def process(self, record: CallRecord) -> CallRecord:
        from threadpoolctl import threadpool_info

        blas = sorted({(d["internal_api"], d["num_threads"]) for d in threadpool_info()})
        torch = sys.modules.get("torch")
        at_exec = dict(v.split(b"=", 1) for v in Path("/proc/self/environ").read_bytes().split(b"\0") if b"=" in v)
        probe = {"blas": blas, "omp_env": os.environ.get("OMP_NUM_THREADS"),
                 "torch": torch.get_num_threads() if torch else None,
                 "glibc_tunables": at_exec.get(b"GLIBC_TUNABLES", b"").decode()}
        return record.with_flag("threads=" + json.dumps(probe, sort_keys=True))


class GroupProbe(Stage):
    """Has ``process_many``: records how many calls it got at once."""

    name = "group_probe"
    kinds = ("chat",)

    def process(self, record: CallRecord) -> CallRecord:
        return record.with_flag("group=1")

    def process_many(self, records):
        return [r.with_flag(f"group={len(records)}") for r in records]


def build_with_probes(cfg):
    import numpy  # noqa: F401  (loads OpenBLAS, as the real stages do)

    return build_stages(cfg) + [ThreadProbe(), GroupProbe()]


def _flags(out, prefix: str) -> dict[str, str]:
    return {r["call_id"]: next(f for f in r["flags"] if f.startswith(prefix))
            for r in read_table(out, "sessions").to_pylist()}


@pytest.mark.model
def test_every_engine_pins_the_same_thread_counts(ray_session, tmp_path, samples, whisper_base):
    import ray.cloudpickle

    from qc_pipeline.executors import LocalExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    chats = str(samples / "chats" / "jddc_3.jsonl")
    driver_tunables = os.environ.get("GLIBC_TUNABLES")
    run_batch([chats], str(tmp_path / "local"), CFG, executor=LocalExecutor(CFG, 1, build=build_with_probes))
    run_batch([chats], str(tmp_path / "ray"), CFG, executor=ray_executor(2, build=build_with_probes))
    run_batch([chats], str(tmp_path / "split"), CFG, executor=ray_executor(1, split=True, build=build_with_probes))
    local = _flags(tmp_path / "local", "threads=")
    assert local == _flags(tmp_path / "ray", "threads=") == _flags(tmp_path / "split", "threads=")
    probe = json.loads(next(iter(local.values())).split("=", 1)[1])
    assert probe["omp_env"] == "1" and probe["blas"] and {n for _, n in probe["blas"]} == {1}  # asr.cpu_threads
    assert "glibc.malloc.hugetlb=1" in probe["glibc_tunables"].split(":")  # executors.base.worker_env
    assert os.environ.get("GLIBC_TUNABLES") == driver_tunables  # the driver's own environment is left as it was


@pytest.mark.model
@pytest.mark.parametrize("split", [False, True], ids=["fused", "split"])
def test_ray_hands_groups_of_calls_per_task_to_process_many(ray_session, tmp_path, samples, whisper_base, split):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = load_config(overrides=("run.progress=false", "run.calls_per_task=3"))
    from qc_pipeline.executors.ray import RayExecutor, RayOptions

    ex = RayExecutor(cfg, 1, options=RayOptions(split=split, build=build_with_probes))
    stats = run_batch([str(samples / "chats" / "jddc_3.jsonl")], str(tmp_path), cfg, executor=ex)
    assert stats.ok == 3 and set(_flags(tmp_path, "group=").values()) == {"group=3"}
