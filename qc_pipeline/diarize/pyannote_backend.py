"""pyannote.audio backend: a speaker-diarization pipeline loaded from a local folder.

No hub access: ``Pipeline.from_pretrained(folder)`` reads ``folder/config.yaml`` whose model
entries point at checkpoint files inside the folder (see models/README.md for the layout).
Telemetry is switched off (``PYANNOTE_METRICS_ENABLED=0``) before pyannote is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.diarize import SpeakerSegment
from qc_pipeline.errors import SetupError


class PyannoteDiarizer:
    def __init__(self, pipeline_dir: str, max_speakers: int = 2) -> None:
        self.pipeline_dir = pipeline_dir
        self.max_speakers = max_speakers
        self.pipeline = None

    def setup(self) -> None:
        if self.pipeline is not None:
            return
        folder = Path(self.pipeline_dir).expanduser()
        if not (folder / "config.yaml").is_file():
            raise SetupError(f"diarization.pyannote_pipeline: no config.yaml in {folder}. Put a pyannote "
                             "speaker-diarization pipeline folder there (models/README.md explains the layout)")
        os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from pyannote.audio import Pipeline
        except ImportError:
            raise SetupError("diarization.backend 'pyannote' needs pyannote.audio: "
                             "pip install 'qc-pipeline[pyannote]'") from None
        self.pipeline = Pipeline.from_pretrained(str(folder))
        if self.pipeline is None:
            raise SetupError(f"pyannote could not build a pipeline from {folder}")

    def diarize(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[SpeakerSegment]:
        import torch

        self.setup()
        waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)[None, :])
        result = self.pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, max_speakers=self.max_speakers)
        annotation = getattr(result, "speaker_diarization", result)
        names: dict[str, str] = {}
        segments = []
        for turn, _track, label in annotation.itertracks(yield_label=True):
            name = names.setdefault(label, f"spk{len(names)}")
            segments.append(SpeakerSegment(round(turn.start, 3), round(turn.end, 3), name))
        return sorted(segments, key=lambda s: s.start)
