"""Speaker diarization backends for mono calls: who spoke when (roles come later, from content).

Each backend is one module plus one entry in ``BACKENDS`` (name -> what it needs, how to build it);
``diarization.backend`` picks one.  Models load in ``setup()``, on the first mono call, so a batch of
stereo calls never loads a speaker model (nor torch).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

from qc_pipeline.diarize.base import Diarizer, SpeakerSegment
from qc_pipeline.errors import SetupError

__all__ = ["BACKENDS", "Diarizer", "SpeakerSegment", "check_available", "make_diarizer"]

DIAR_INSTALL = "pip install 'qc-pipeline[diar]'"
DIAR_HINT = f"{DIAR_INSTALL} (or set diarization.backend: none)"


@dataclass(frozen=True)
class Backend:
    needs: tuple[str, ...]                  # importable modules
    hint: str                               # how to get them
    build: Callable[..., Diarizer]          # (DiarizationConfig) -> Diarizer
    check: Callable[..., None] | None = None  # extra set-up check (folders, caches)


def _embedded(cfg) -> Diarizer:
    from qc_pipeline.diarize.embedded import EmbeddedDiarizer

    return EmbeddedDiarizer(max_speakers=cfg.max_speakers, window_s=cfg.window_s, hop_s=cfg.hop_s,
                            min_segment_s=cfg.min_segment_s, single_speaker_similarity=cfg.single_speaker_similarity)


def _campp(cfg) -> Diarizer:
    from qc_pipeline.diarize.campp import CamppDiarizer

    return CamppDiarizer(cfg)


def _campp_check(cfg) -> None:
    """The ONNX export happens once per machine; until it exists torch and onnx are needed to make it."""
    from qc_pipeline.diarize.campp import onnx_cached

    if not onnx_cached(cfg.cache_dir):
        _require(("torch", "onnx"), "campp", "to build its ONNX cache once: " + DIAR_HINT)


def _senko(cfg) -> Diarizer:
    from qc_pipeline.diarize.senko_backend import SenkoDiarizer

    return SenkoDiarizer(threads=cfg.threads, cache_dir=cfg.cache_dir)


def _senko_check(cfg) -> None:
    """numba's cache folder can be made (before the first mono call, not as a failed row per call)."""
    from qc_pipeline.diarize.senko_backend import numba_cache

    numba_cache(cfg.cache_dir)


def _pyannote(cfg) -> Diarizer:
    from qc_pipeline.diarize.pyannote_backend import PyannoteDiarizer

    return PyannoteDiarizer(cfg.pyannote_pipeline, max_speakers=cfg.max_speakers)


def _pyannote_check(cfg) -> None:
    from pathlib import Path

    if not (Path(cfg.pyannote_pipeline).expanduser() / "config.yaml").is_file():
        raise SetupError(f"diarization.pyannote_pipeline: no config.yaml in {cfg.pyannote_pipeline}; "
                         "see models/README.md for the folder layout")


BACKENDS: dict[str, Backend] = {
    "campp": Backend(("onnxruntime", "senko"), DIAR_HINT, _campp, _campp_check),
    "embedded": Backend(("torch", "resemblyzer"), DIAR_HINT, _embedded),
    "senko": Backend(("senko", "torch"), DIAR_HINT, _senko, _senko_check),
    "pyannote": Backend(("pyannote",), "pyannote.audio in an environment of its own (models/README.md)",
                        _pyannote, _pyannote_check),
}


def _require(modules: tuple[str, ...], backend: str, hint: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SetupError(f"diarization.backend '{backend}' needs {' and '.join(missing)}: {hint}")


def check_available(cfg) -> None:
    """Raise SetupError now if the configured backend cannot be loaded later (missing package or folder)."""
    backend = BACKENDS.get(cfg.backend)
    if backend is None:
        return  # "none"
    _require(backend.needs, cfg.backend, backend.hint)
    if backend.check is not None:
        backend.check(cfg)


def make_diarizer(cfg) -> Diarizer | None:
    """The diarizer ``diarization.backend`` names (not loaded yet), or None for ``none``."""
    backend = BACKENDS.get(cfg.backend)
    return None if backend is None else backend.build(cfg)
