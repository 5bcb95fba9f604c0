"""Kaldi-compatible log-mel filterbank (80 bins, 25 ms / 10 ms, povey window), in numpy.

The CAM++ speaker model was trained on ``torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80,
dither=0)`` features with the mean over each segment subtracted; this reproduces those features
without torchaudio (frames are snipped at the edges, power spectrum, no energy term).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE

FRAME_LEN = 400     # 25 ms
FRAME_SHIFT = 160   # 10 ms
N_FFT = 512
N_MELS = 80
PREEMPH = 0.97


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)


@lru_cache(maxsize=1)
def _mel_banks() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) triangular filters, flat in mel between 20 Hz and Nyquist (Kaldi)."""
    lo, hi = _mel(20.0), _mel(SAMPLE_RATE / 2)
    centers = lo + np.arange(N_MELS + 2) * (hi - lo) / (N_MELS + 1)
    fft_mel = _mel(np.arange(N_FFT // 2) * SAMPLE_RATE / N_FFT)
    banks = np.zeros((N_FFT // 2 + 1, N_MELS), np.float32)
    for m in range(N_MELS):
        left, center, right = centers[m], centers[m + 1], centers[m + 2]
        up = (fft_mel - left) / (center - left)
        down = (right - fft_mel) / (right - center)
        banks[:N_FFT // 2, m] = np.maximum(0.0, np.minimum(up, down))
    return banks


@lru_cache(maxsize=1)
def _povey() -> np.ndarray:
    n = np.arange(FRAME_LEN)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_LEN - 1))) ** 0.85


def _frames(x: np.ndarray) -> np.ndarray:
    """(n, FRAME_LEN) frames of ``x``: frame i covers samples [160 i, 160 i + 400); none when ``x`` is
    shorter than one frame."""
    n = 1 + (len(x) - FRAME_LEN) // FRAME_SHIFT if len(x) >= FRAME_LEN else 0
    return x[np.arange(FRAME_LEN)[None, :] + FRAME_SHIFT * np.arange(n)[:, None]]


def frame_db(audio: np.ndarray) -> np.ndarray:
    """Level in dB (10 log10 of the mean square, in float64) of each 25 ms frame of ``audio``, every
    10 ms (the frames of :func:`fbank`)."""
    frames = _frames(np.asarray(audio)).astype(np.float64)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def fbank(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) log-mel energies of 16 kHz mono ``audio`` (float, any scale); frame i covers
    samples [160 i, 160 i + 400)."""
    frames = _frames(np.asarray(audio, np.float32) * 32768.0).astype(np.float64)
    if not len(frames):
        return np.zeros((0, N_MELS), np.float32)
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= PREEMPH * frames[:, :-1].copy()
    frames[:, 0] -= PREEMPH * frames[:, 0]
    frames *= _povey()
    power = np.abs(np.fft.rfft(frames, N_FFT)) ** 2
    mel = power.astype(np.float32) @ _mel_banks()
    return np.log(np.maximum(mel, np.finfo(np.float32).eps))
