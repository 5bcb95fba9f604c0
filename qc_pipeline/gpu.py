"""CUDA 12 runtime libraries for CTranslate2 on hosts that only have CUDA 13.

PyPI's ``ctranslate2`` wheels link against cuBLAS 12 and cuDNN 9.  A host driver for CUDA 13 runs
CUDA 12 user-space libraries fine (drivers are backward compatible); what is missing is the
libraries themselves.  ``pip install 'qc-pipeline[gpu]'`` brings them as NVIDIA's PyPI wheels
(``nvidia-cublas-cu12``, ``nvidia-cudnn-cu12``), and :func:`preload_cuda12_libs` loads them with
``RTLD_GLOBAL`` before CTranslate2 asks for them, so no ``LD_LIBRARY_PATH`` editing is needed.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import logging
import os

log = logging.getLogger(__name__)

# load order matters: cuBLASLt before cuBLAS, cuDNN's sub-libraries after the main one
_LIBS = (("nvidia.cublas", ("libcublasLt.so.12", "libcublas.so.12")),
         ("nvidia.cudnn", ("libcudnn.so.9", "libcudnn_*.so.9")))

_loaded: list[str] = []


def _lib_dir(package: str):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "lib")


def preload_cuda12_libs() -> list[str]:
    """Load the CUDA 12 wheels' libraries if they are installed; return what was loaded (idempotent)."""
    if _loaded:
        return list(_loaded)
    for package, patterns in _LIBS:
        try:
            lib_dir = _lib_dir(package)
        except (ImportError, ValueError):
            lib_dir = None
        if not lib_dir or not os.path.isdir(lib_dir):
            continue
        for pattern in patterns:
            for path in sorted(glob.glob(os.path.join(lib_dir, pattern))):
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    _loaded.append(path)
                except OSError as exc:  # e.g. no driver at all: CPU path goes on
                    log.debug("could not preload %s: %s", path, exc)
    if _loaded:
        log.info("preloaded %d CUDA 12 libraries from the nvidia-* wheels", len(_loaded))
    return list(_loaded)
