"""Decode any container/codec PyAV (bundled FFmpeg) reads into per-channel 16 kHz float32.

No system ffmpeg is needed.  Channels are kept apart — a stereo call yields a
``(2, n)`` array, never a downmix.  Problems map to reason codes (see errors.Reason).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import AudioInfo

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


def wav_missing_bytes(path: str) -> int:
    """For RIFF/WAVE files: bytes the ``data`` chunk header promises beyond the end of the file
    (FFmpeg clamps the duration to the file size, so truncation is invisible to it).  0 when the
    file is complete or the size is unknown (streaming writers put 0 or 0xFFFFFFFF there)."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0
            size = os.fstat(fh.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                chunk_id, chunk_len = struct.unpack("<4sI", fh.read(8))
                if chunk_id == b"data":
                    if chunk_len in (0, 0xFFFFFFFF):
                        return 0
                    return max(0, pos + 8 + chunk_len - size)
                pos += 8 + chunk_len + (chunk_len & 1)
    except OSError:
        return 0
    return 0


def _open(path: str):
    import av  # local import keeps `qc-pipeline --help` fast

    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise CallError(Reason.NOT_AUDIO, f"cannot open as audio ({exc.__class__.__name__}: {exc})") from None


def load_audio(path: str | os.PathLike, *, max_channels: int = 2, max_duration_s: float = 4 * 3600.0,
               min_duration_s: float = 0.0) -> tuple[np.ndarray, AudioInfo]:
    """Return ``(audio, info)`` with ``audio`` shaped ``(channels, samples)`` at 16 kHz float32."""
    import av

    path = str(path)
    p = Path(path)
    if not p.is_file():
        raise CallError(Reason.FILE_NOT_FOUND, f"no such file: {path}")
    if p.stat().st_size == 0:
        raise CallError(Reason.EMPTY_FILE, "file is 0 bytes")

    container = _open(path)
    try:
        if not container.streams.audio:
            raise CallError(Reason.NO_AUDIO_STREAM, "file has no audio stream")
        stream = container.streams.audio[0]
        channels = stream.channels or 0
        src_rate = stream.sample_rate or stream.rate or 0
        if channels < 1 or src_rate <= 0:
            raise CallError(Reason.NOT_AUDIO, f"invalid audio stream (channels={channels}, rate={src_rate})")
        if channels > max_channels:
            raise CallError(
                Reason.UNSUPPORTED_CHANNELS,
                f"{channels} channels; calls must be mono or stereo (agent/customer per channel). "
                f"Split the file or raise audio.max_channels",
            )
        claimed = None
        if stream.duration is not None and stream.time_base is not None:
            claimed = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            claimed = container.duration / 1_000_000
        if claimed is not None and claimed > max_duration_s:
            raise CallError(Reason.TOO_LONG, f"header says {claimed:.0f} s > audio.max_duration_s={max_duration_s:.0f}")

        layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
        max_samples = int(max_duration_s * SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        total = 0
        decode_failed = None
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler ignore broken timestamps
                for out in resampler.resample(frame):
                    arr = out.to_ndarray()
                    chunks.append(arr)
                    total += arr.shape[1]
                if total > max_samples:
                    raise CallError(Reason.TOO_LONG, f"decoded more than audio.max_duration_s={max_duration_s:.0f} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as exc:
            decode_failed = f"{exc.__class__.__name__}: {exc}"
        codec = stream.codec_context.name if stream.codec_context else "?"
        fmt = container.format.name if container.format else "?"
    finally:
        container.close()

    audio = np.concatenate(chunks, axis=1).astype(np.float32, copy=False) if chunks else np.zeros((channels, 0), np.float32)
    duration = audio.shape[1] / SAMPLE_RATE
    if decode_failed and duration < 0.1:
        raise CallError(Reason.DECODE_ERROR, decode_failed)
    if duration == 0:
        raise CallError(Reason.NOT_AUDIO if claimed in (None, 0) else Reason.DECODE_ERROR, "no audio samples decoded")
    if duration < min_duration_s:
        raise CallError(Reason.TOO_SHORT, f"{duration:.2f} s < audio.min_duration_s={min_duration_s}")
    missing = wav_missing_bytes(path) if fmt == "wav" else 0
    short_of_header = claimed is not None and duration < 0.97 * claimed - 0.05
    truncated = bool(decode_failed) or short_of_header or missing > 0
    if truncated:
        why = decode_failed or (f"header promises {missing} more bytes" if missing else
                                f"header claims {claimed:.2f} s")
        log.warning("%s: file is truncated (%s); keeping the %.2f s that decoded", path, why, duration)
    info = AudioInfo(sample_rate=int(src_rate), channels=channels, duration_s=round(duration, 3),
                     codec=codec, container=fmt, truncated=truncated)
    return audio, info
