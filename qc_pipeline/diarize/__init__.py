"""Speaker diarization backends for mono calls: who spoke when (roles come later, from content)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class SpeakerSegment:
    start: float
    end: float
    speaker: str  # "spk0", "spk1", ...


class Diarizer(Protocol):
    def setup(self) -> None: ...

    def diarize(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[SpeakerSegment]:
        """``audio``: one channel, 16 kHz float32; ``speech``: VAD intervals in seconds."""
        ...


def check_available(cfg) -> None:
    """Raise SetupError now if the configured backend cannot be loaded later (missing package or folder)."""
    import importlib.util
    from pathlib import Path

    from qc_pipeline.errors import SetupError

    if cfg.backend == "embedded":
        missing = [m for m in ("torch", "resemblyzer") if importlib.util.find_spec(m) is None]
        if missing:
            raise SetupError(f"diarization.backend 'embedded' needs {' and '.join(missing)}: "
                             "pip install 'qc-pipeline[diar]' (or set diarization.backend: none)")
    elif cfg.backend == "pyannote":
        if importlib.util.find_spec("pyannote") is None:
            raise SetupError("diarization.backend 'pyannote' needs pyannote.audio (models/README.md)")
        if not (Path(cfg.pyannote_pipeline).expanduser() / "config.yaml").is_file():
            raise SetupError(f"diarization.pyannote_pipeline: no config.yaml in {cfg.pyannote_pipeline}; "
                             "see models/README.md for the folder layout")


def make_diarizer(cfg) -> "Diarizer | None":
    """The diarizer ``diarization.backend`` names, or None for ``none``."""
    if cfg.backend == "none":
        return None
    if cfg.backend == "embedded":
        from qc_pipeline.diarize.embedded import EmbeddedDiarizer

        return EmbeddedDiarizer(max_speakers=cfg.max_speakers, window_s=cfg.window_s, hop_s=cfg.hop_s,
                                min_segment_s=cfg.min_segment_s, single_speaker_similarity=cfg.single_speaker_similarity)
    from qc_pipeline.diarize.pyannote_backend import PyannoteDiarizer

    return PyannoteDiarizer(cfg.pyannote_pipeline, max_speakers=cfg.max_speakers)
