"""Where model folders live, file checksums, CPU onnxruntime sessions.  Nothing here touches the network.

``$QC_PIPELINE_MODELS_DIR`` wins; otherwise the ``models/`` folder of the installation (the checkout
qc-pipeline runs from), so a cron job started in another working directory finds the same models.  A
non-editable install without such a folder uses ``$XDG_DATA_HOME/qc-pipeline/models``
(``~/.local/share/qc-pipeline/models``).  ASR model installation is in :mod:`qc_pipeline.asr.install`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

from qc_pipeline.errors import SetupError

MODELS_DIR_ENV = "QC_PIPELINE_MODELS_DIR"
INSTALL_ROOT = Path(__file__).resolve().parents[1]   # the checkout (editable install) or site-packages


def models_dir() -> Path:
    """``$QC_PIPELINE_MODELS_DIR``, else ``<installation>/models``, else the per-user data folder."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    beside = INSTALL_ROOT / "models"
    if beside.is_dir():
        return beside
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "qc-pipeline" / "models"


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def cpu_session(model: Path | bytes | Callable[[], Path | bytes], threads: int, missing: str) -> Any:
    """An onnxruntime ``InferenceSession`` on the CPU: ``threads`` intra-op threads, one inter-op thread,
    onnxruntime's own warnings off.  ``model`` is a file, the model's bytes, or a function giving either,
    called only once onnxruntime imports (a missing onnxruntime is reported before any costly export).
    Without onnxruntime: ``SetupError(missing)``, the caller's own message with its install hint."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SetupError(missing) from None
    if callable(model):
        model = model()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])
