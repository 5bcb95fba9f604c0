"""The Ray engine: the same stage list and supervision ledger as the local engine, on Ray actors."""

from qc_pipeline.executors.ray.actors import StageActor, vm_hwm_mib
from qc_pipeline.executors.ray.executor import INSTALL_HINT, RayExecutor, RayOptions

__all__ = ["RayExecutor", "RayOptions", "StageActor", "vm_hwm_mib", "INSTALL_HINT"]
