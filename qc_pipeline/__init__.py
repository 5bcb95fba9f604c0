"""qc-pipeline: AI quality inspection for Chinese call centers."""

__version__ = "0.1.0"
