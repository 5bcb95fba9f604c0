"""``asr.backend`` name → backend class.  Adding a backend is one module plus one line here."""

from __future__ import annotations

import importlib
from typing import Optional

from qc_pipeline.asr.base import AsrBackend
from qc_pipeline.config import AsrConfig
from qc_pipeline.errors import ConfigError

BACKENDS = {
    "faster-whisper": "qc_pipeline.asr.faster_whisper:FasterWhisperBackend",
}


def backend_class(name: str) -> type[AsrBackend]:
    if name not in BACKENDS:
        raise ConfigError("asr.backend", f"unknown ASR backend {name!r}; known: {', '.join(BACKENDS)}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_backend(cfg: AsrConfig) -> AsrBackend:
    """A backend for ``cfg`` (not loaded yet: call ``load()`` in the worker that uses it)."""
    return backend_class(cfg.backend)(cfg)


def backend_uses_gpu(cfg: AsrConfig) -> bool:
    """Would ASR with this config run on a GPU on this machine?  For executors and batch sizing: asks the
    backend (which looks for a device without loading any model); False when the backend is not installed."""
    try:
        cls = backend_class(cfg.backend)
    except ImportError:
        return False
    return bool(getattr(cls, "would_use_gpu", lambda _cfg: False)(cfg))


def backend_gpu_problem(cfg: AsrConfig) -> Optional[str]:
    """Why this backend cannot decode on a GPU here (the text names the fix): the backend's optional
    ``gpu_problem()``; None when it can, has no such check, or is not installed."""
    try:
        problem = getattr(backend_class(cfg.backend), "gpu_problem", None)
        return problem() if problem is not None else None
    except ImportError:
        return None
