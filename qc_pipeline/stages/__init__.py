"""Pipeline stages: each owns one module and one job."""

from qc_pipeline.stages.base import Stage

__all__ = ["Stage"]
