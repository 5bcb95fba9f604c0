"""Helpers for tests, samples and benchmarks: write audio in any PyAV-supported format."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np

_FORMATS = {  # suffix -> (container format, codec); frames go in as s16, PyAV converts for the codec
    ".wav": ("wav", "pcm_s16le"),
    ".flac": ("flac", "flac"),
    ".mp3": ("mp3", "libmp3lame"),
    ".m4a": ("ipod", "aac"),
    ".ogg": ("ogg", "libopus"),
    ".amr": ("amr", "libopencore_amrnb"),
}


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, codec: str | None = None,
                bit_rate: int | None = None) -> Path:
    """Write ``audio`` (``(channels, n)`` or ``(n,)`` float in [-1, 1]) in the container the suffix implies,
    with its usual codec or ``codec`` (e.g. ``pcm_mulaw`` in a .wav: G.711); ``bit_rate`` (bit/s) for a
    lossy codec, else the codec's default."""
    import av

    path = Path(path)
    fmt, default_codec = _FORMATS[path.suffix.lower()]
    data = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    channels = data.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    pcm16 = (np.clip(data, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec or default_codec, rate=sample_rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        frame_size = 1024
        for i in range(0, pcm16.shape[1], frame_size):
            block = pcm16[:, i:i + frame_size]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T.reshape(1, -1)), format="s16", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = i
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling of ``(channels, n)`` float audio with FFmpeg's resampler (via PyAV)."""
    import av

    data = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    layout = "mono" if data.shape[0] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
    frame.sample_rate = src_rate
    rs = av.AudioResampler(format="fltp", layout=layout, rate=dst_rate)
    out = [f.to_ndarray() for f in rs.resample(frame)] + [f.to_ndarray() for f in rs.resample(None)]
    return np.concatenate(out, axis=1)


def tts_line_spans(mono: np.ndarray, n_lines: int, line_gap_s: float = 0.40) -> list[tuple[float, float]]:
    """Time span of each line of a TTS call made by joining lines with gaps (as in
    ../shared/data/synthetic_calls): VAD spans closer than ``line_gap_s`` belong to one line.
    Raises ValueError when the grouping does not give ``n_lines`` lines."""
    from qc_pipeline.config import VadConfig
    from qc_pipeline.vad import detect_speech

    groups: list[list[tuple[float, float]]] = []
    for s in detect_speech(mono, VadConfig()):
        if groups and s[0] - groups[-1][-1][1] < line_gap_s:
            groups[-1].append(s)
        else:
            groups.append([s])
    if len(groups) != n_lines:
        raise ValueError(f"found {len(groups)} line groups, expected {n_lines}")
    return [(g[0][0], g[-1][1]) for g in groups]


def telephone_copy(src: str | Path, dst: str | Path) -> Path:
    """A telephone-channel copy of a mono recording: 8 kHz, 300–3400 Hz band (4th-order Butterworth, causal
    like a real channel), stored as G.711 μ-law WAV.  For evaluations and tests of band-limited speech."""
    import soundfile as sf
    from scipy.signal import butter, resample_poly, sosfilt

    audio, rate = sf.read(str(src), dtype="float32", always_2d=True)
    if audio.shape[1] != 1:
        raise ValueError(f"{src}: telephone copies are made of mono recordings (got {audio.shape[1]} channels)")
    g = np.gcd(int(rate), 8000)
    x = resample_poly(audio[:, 0], 8000 // g, int(rate) // g)
    x = sosfilt(butter(4, (300, 3400), btype="bandpass", fs=8000, output="sos"), x)
    sf.write(str(dst), np.clip(x, -1.0, 1.0).astype(np.float32), 8000, subtype="ULAW")
    return Path(dst)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """A hard link (no disk), else a copy: folder inputs refuse symlinks that lead outside the folder."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
