"""Decode any container/codec PyAV (bundled FFmpeg) reads into per-channel 16 kHz float32.

No system ffmpeg is needed.  Channels are kept apart — a stereo call yields a
``(2, n)`` array, never a downmix.  Problems map to reason codes (see errors.Reason).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import AudioInfo

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


MAX_WAV_CHUNKS = 64  # RIFF chunks walked looking for 'data' (a crafted file could hold millions)
# Demuxers that open other files or URLs named inside the input; never wanted for a call recording.
REFERENCING_FORMATS = frozenset({"hls", "concat", "dash", "image2", "mpjpeg", "tee", "sdp", "rtsp", "ffmetadata"})


DURATION_ESTIMATED_FORMATS = frozenset({"amr", "amrnb", "amrwb", "aac", "gsm"})  # FFmpeg demuxer names


def wav_header_claim(path: str) -> tuple[int, int, int]:
    """For RIFF/WAVE files: ``(data_offset, data_bytes_claimed, file_size)`` from the ``data`` chunk
    header; ``(0, 0, size)`` when not a WAV, no data chunk was found, or the size is unknown
    (streaming writers put 0 or 0xFFFFFFFF there)."""
    import struct

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0, 0, size
            pos = 12
            for _ in range(MAX_WAV_CHUNKS):
                if pos + 8 > size:
                    break
                fh.seek(pos)
                chunk_id, chunk_len = struct.unpack("<4sI", fh.read(8))
                if chunk_id == b"data":
                    return (0, 0, size) if chunk_len in (0, 0xFFFFFFFF) else (pos + 8, chunk_len, size)
                pos += 8 + chunk_len + (chunk_len & 1)
    except OSError:
        return 0, 0, 0
    return 0, 0, size


def wav_missing_bytes(path: str) -> int:
    """For RIFF/WAVE files: bytes the ``data`` chunk header promises beyond the end of the file
    (FFmpeg clamps the duration to the file size, so truncation is invisible to it).  0 when the
    file is complete or the size is unknown."""
    offset, claimed, size = wav_header_claim(path)
    return max(0, offset + claimed - size) if claimed else 0


def _check_regular_file(path: str) -> None:
    """FILE_NOT_FOUND / NOT_A_FILE / EMPTY_FILE before anything opens the path (a FIFO or a
    device such as /dev/zero would block or never end)."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CallError(Reason.FILE_NOT_FOUND, f"no such file: {path}") from None
    except (OSError, ValueError) as exc:
        raise CallError(Reason.FILE_NOT_FOUND, f"cannot stat {path!r}: {exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket or special file")
        raise CallError(Reason.NOT_A_FILE, f"{path} is {kind}, not a regular file")
    if st.st_size == 0:
        raise CallError(Reason.EMPTY_FILE, "file is 0 bytes")


def _open(path: str):
    import av  # local import keeps `qc-pipeline --help` fast

    try:
        # an absolute path is never read as a protocol ("pipe:", "concat:"), and only local files may be opened
        container = av.open(os.path.abspath(path), metadata_errors="ignore", options={"protocol_whitelist": "file"})
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise CallError(Reason.NOT_AUDIO, f"cannot open as audio ({exc.__class__.__name__}: {exc})") from None
    fmt = container.format.name if container.format else ""
    if set(fmt.split(",")) & REFERENCING_FORMATS:
        container.close()
        raise CallError(Reason.NOT_AUDIO, f"container format {fmt!r} refers to other files; not a call recording")
    return container


def _claimed_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _check_wav_claim(path: str, stream, max_duration_s: float) -> None:
    """BAD_HEADER: a WAV whose data chunk promises more than ``max_duration_s`` of audio while the
    file holds much less (FFmpeg clamps its duration to the file size, so it cannot tell)."""
    offset, claimed, size = wav_header_claim(path)
    bit_rate = stream.bit_rate or (stream.codec_context.bit_rate if stream.codec_context else 0)
    if not claimed or not bit_rate or offset + claimed <= size:
        return
    claimed_s = claimed * 8 / bit_rate
    if claimed_s > max_duration_s:
        raise CallError(Reason.BAD_HEADER, f"WAV header claims {claimed} bytes ({claimed_s / 3600:.1f} h) but the "
                                           f"file has only {size} bytes; the header is corrupt")


def load_audio(path: str | os.PathLike, *, max_channels: int = 2, max_duration_s: float = 4 * 3600.0,
               min_duration_s: float = 0.0) -> tuple[np.ndarray, AudioInfo]:
    """Return ``(audio, info)`` with ``audio`` shaped ``(channels, samples)`` at 16 kHz float32."""
    import av

    path = str(path)
    _check_regular_file(path)
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
        claimed = _claimed_duration(container, stream)
        if claimed is not None and claimed > max_duration_s:
            raise CallError(Reason.TOO_LONG, f"header says {claimed:.0f} s > audio.max_duration_s={max_duration_s:.0f}")
        if container.format is not None and container.format.name == "wav":
            _check_wav_claim(path, stream, max_duration_s)

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
    # a header length is a promise; FFmpeg's estimate from the bit rate (AMR, ADTS AAC: no length in the
    # file) is not one, and is far off when the codec mode changes mid-call
    trusted = claimed is not None and fmt not in DURATION_ESTIMATED_FORMATS
    short_of_header = trusted and duration < 0.97 * claimed - 0.05
    truncated = bool(decode_failed) or short_of_header or missing > 0
    if truncated:
        why = decode_failed or (f"header promises {missing} more bytes" if missing else
                                f"header claims {claimed:.2f} s")
        log.warning("%s: file is truncated (%s); keeping the %.2f s that decoded", path, why, duration)
    info = AudioInfo(sample_rate=int(src_rate), channels=channels, duration_s=round(duration, 3),
                     codec=codec, container=fmt, truncated=truncated)
    return audio, info
