"""The Ray engine when a node leaves the cluster mid-run: a 2-node cluster (``ray.cluster_utils``,
two raylets on this machine), one actor per node; the worker node is removed while its actor is running a call.
Its call goes again on the surviving node, the pool goes on one actor short instead of waiting for a
slot that never frees up, and every call is written exactly once."""

import functools
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from qc_pipeline.config import load_config
from qc_pipeline.pipeline import build_stages
from qc_pipeline.records import CallRecord
from qc_pipeline.runner import run_batch
from qc_pipeline.sinks import read_table
from qc_pipeline.stages.base import Stage

CFG = load_config(overrides=("run.progress=false",))


class BusyOnNode(Stage):
    """On the doomed node a call marks itself running and then takes long; elsewhere calls are quick."""

    name = "busy_on_node"
    kinds = ("chat",)

    def __init__(self, node_id: str, marker: str) -> None:
        self.node_id, self.marker = node_id, marker

    def process(self, record: CallRecord) -> CallRecord:
        import ray

        if ray.get_runtime_context().get_node_id() == self.node_id:
            Path(self.marker).touch()
            time.sleep(60)
        else:
            time.sleep(0.5)
        return record


def build_with_busy(cfg, *, node_id, marker):
    return build_stages(cfg) + [BusyOnNode(node_id, marker)]


@pytest.fixture(scope="module")
def two_node_cluster():
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.model
def test_node_lost_mid_run_shrinks_the_pool_and_nothing_is_lost(two_node_cluster, tmp_path, samples, whisper_base):
    import ray.cloudpickle

    from qc_pipeline.executors.ray import RayExecutor, RayOptions

    cluster, worker = two_node_cluster
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    marker = tmp_path / "busy_on_worker_node"

    def remove_worker_node_once_busy():
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        cluster.remove_node(worker)

    chats = samples / "chats" / "jddc_3.jsonl"
    ids = [json.loads(line)["dialogue_id"] for line in chats.read_text("utf-8").splitlines()]
    build = functools.partial(build_with_busy, node_id=worker.node_id, marker=str(marker))
    ex = RayExecutor(CFG, 2, options=RayOptions(in_flight_per_actor=1, placement_wait_s=3.0, build=build))
    remover = threading.Thread(target=remove_worker_node_once_busy, daemon=True)
    remover.start()
    t0 = time.monotonic()
    stats = run_batch([str(chats)], str(tmp_path / "out"), CFG, executor=ex)
    remover.join(timeout=5)
    assert marker.exists()  # a call really was running on the worker node when it went
    assert time.monotonic() - t0 < 60  # well under the 60 s the call on the lost node would have taken
    assert sum(ex.actor_nodes["pipeline"].values()) == 2  # both nodes share this machine's IP here
    assert ex.dropped_slots == {"pipeline": 1}
    assert (stats.ok, dict(stats.failed)) == (3, {})
    rows = read_table(tmp_path / "out", "sessions").to_pylist()
    assert sorted(r["call_id"] for r in rows) == sorted(ids)
