"""cuBLAS 12 for CTranslate2 on hosts that only have CUDA 13.

PyPI's ``ctranslate2`` wheels (4.8.5) carry their own CUDA 12 runtime and open ``libcublas.so.12`` by name
at the first matrix product; they use no cuDNN.  A host driver for CUDA 13 runs that runtime fine (drivers
are backward compatible); what is missing is cuBLAS 12.  ``pip install 'qc-pipeline[gpu]'`` brings it as
NVIDIA's PyPI wheel (``nvidia-cublas-cu12``), and :func:`preload_cuda12_libs` loads it with ``RTLD_GLOBAL``
before CTranslate2 asks for it, so no ``LD_LIBRARY_PATH`` editing is needed.  Where it is still missing,
:func:`cublas_loadable` says so, and ``asr.device: auto`` decodes on the CPU instead of failing every call.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os

log = logging.getLogger(__name__)

CUBLAS = "libcublas.so.12"  # the name CTranslate2 4.x opens
GPU_INSTALL = "pip install 'qc-pipeline[gpu]'"
_CUBLAS_LIBS = ("libcublasLt.so.12", CUBLAS)  # load order matters: cuBLASLt before cuBLAS

_loaded: list[str] = []


def _lib_dir(package: str):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "lib")


def preload_cuda12_libs() -> list[str]:
    """Load the cuBLAS 12 wheel's libraries if it is installed; return what was loaded (idempotent)."""
    if _loaded:
        return list(_loaded)
    try:
        lib_dir = _lib_dir("nvidia.cublas")
    except (ImportError, ValueError):
        lib_dir = None
    for name in _CUBLAS_LIBS if lib_dir else ():
        path = os.path.join(lib_dir, name)
        if not os.path.exists(path):
            continue
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            _loaded.append(path)
        except OSError as exc:  # e.g. no driver at all: CPU path goes on
            log.debug("could not preload %s: %s", path, exc)
    if _loaded:
        log.info("preloaded %d CUDA 12 libraries from the nvidia-* wheels", len(_loaded))
    return list(_loaded)


def cublas_loadable() -> bool:
    """Whether CTranslate2 will find cuBLAS 12: already loaded (the preload) or on the loader's search path."""
    try:
        ctypes.CDLL(CUBLAS)
    except OSError:
        return False
    return True
