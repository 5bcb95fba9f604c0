"""Silero VAD (the ONNX model bundled with faster-whisper): speech intervals in one channel.

Its own module so the segment stage, the diarization helpers and scripts use VAD without going through
an ASR backend; faster-whisper is only the package that ships the model file and its runner.
"""

from __future__ import annotations

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.config import VadConfig


def detect_speech(audio: np.ndarray, cfg: VadConfig) -> list[tuple[float, float]]:
    """Speech intervals (seconds) in one channel of 16 kHz audio."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    opts = VadOptions(threshold=cfg.threshold, min_silence_duration_ms=cfg.min_silence_ms,
                      speech_pad_ms=cfg.speech_pad_ms, max_speech_duration_s=cfg.max_span_s)
    stamps = get_speech_timestamps(np.ascontiguousarray(audio, dtype=np.float32), opts, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]
