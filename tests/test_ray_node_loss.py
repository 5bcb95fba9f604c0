"""The Ray engine when a node leaves the cluster mid-run: a 2-node cluster (``ray.cluster_utils``,
two raylets on this machine), one actor per node; the worker node is removed while its actor is busy.
Its call goes again on the surviving node, the pool goes on one actor short instead of waiting for a
slot that never frees up, and every call is written exactly once."""

import functools
import json
import sys
import time

import pytest

from qc_pipeline.config import load_config
from qc_pipeline.executor import run_batch
from qc_pipeline.pipeline import build_stages
from qc_pipeline.records import CallRecord
from qc_pipeline.stages.base import Stage
from qc_pipeline.writer import read_table

CFG = load_config(overrides=("run.progress=false",))


class Pause(Stage):
    """Each chat session takes ``seconds``, so the worker node's actor is busy when the node goes."""

    name = "pause"
    kinds = ("chat",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def process(self, record: CallRecord) -> CallRecord:
        time.sleep(self.seconds)
        return record


def build_with_pause(cfg, *, seconds):
    return build_stages(cfg) + [Pause(seconds)]


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

    from qc_pipeline.executor_ray import RayExecutor, RayOptions

    cluster, worker = two_node_cluster
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    class RemovesWorkerNode(RayExecutor):
        """Takes the worker node away right after the third call is submitted (two are running)."""

        submitted = 0

        def _submit(self, ray, pools, job, k, item):
            ref = super()._submit(ray, pools, job, k, item)
            RemovesWorkerNode.submitted += 1
            if RemovesWorkerNode.submitted == 3:
                cluster.remove_node(worker)
            return ref

    chats = samples / "chats" / "jddc_3.jsonl"
    ids = [json.loads(line)["dialogue_id"] for line in chats.read_text("utf-8").splitlines()]
    ex = RemovesWorkerNode(CFG, 2, options=RayOptions(in_flight_per_actor=1, placement_wait_s=3.0,
                                                      build=functools.partial(build_with_pause, seconds=3.0)))
    t0 = time.monotonic()
    stats = run_batch([str(chats)], str(tmp_path / "out"), CFG, executor=ex)
    assert time.monotonic() - t0 < 150
    assert sum(ex.actor_nodes["pipeline"].values()) == 2  # both nodes share this machine's IP here
    assert ex.dropped_slots == {"pipeline": 1}
    assert (stats.ok, dict(stats.failed)) == (3, {})
    rows = read_table(tmp_path / "out", "sessions").to_pylist()
    assert sorted(r["call_id"] for r in rows) == sorted(ids)
