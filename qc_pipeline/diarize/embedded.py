"""Embedded diarizer: Silero VAD spans → resemblyzer d-vectors on sliding windows → clustering.

Runs offline from PyPI-installed weights (resemblyzer ships its encoder).  Each speech span is
cut into windows (``window_s`` long, every ``hop_s``); windows are embedded and clustered into at
most ``max_speakers`` speakers (spherical k-means; fewer when centroids are near-identical).  Every 10 ms frame takes
the majority label of the windows covering it, so a short overlap or interjection does not split
a turn; runs shorter than ``min_segment_s`` are merged into their neighbour.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.diarize import DIAR_HINT
from qc_pipeline.diarize.base import SpeakerSegment
from qc_pipeline.diarize.labels import frames_to_segments, sliding_windows
from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)


class EmbeddedDiarizer:
    def __init__(self, max_speakers: int, window_s: float, hop_s: float, min_segment_s: float,
                 single_speaker_similarity: float) -> None:
        self.max_speakers = max_speakers
        self.window_s = window_s
        self.hop_s = hop_s
        self.min_segment_s = min_segment_s
        self.single_speaker_similarity = single_speaker_similarity
        self.encoder = None

    def setup(self) -> None:
        if self.encoder is not None:
            return
        try:
            import torch
            from resemblyzer import VoiceEncoder
        except ImportError:
            raise SetupError(f"diarization.backend 'embedded' needs resemblyzer and torch: {DIAR_HINT}") from None
        torch.set_num_threads(1)
        self.encoder = VoiceEncoder(device="cpu", verbose=False)

    # -- embeddings --------------------------------------------------------------------------
    def _embed(self, audio: np.ndarray, wins: list[tuple[float, float]]) -> np.ndarray:
        from resemblyzer.audio import wav_to_mel_spectrogram

        import torch

        mels = [wav_to_mel_spectrogram(audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)]) for s, e in wins]
        n_frames = max(m.shape[0] for m in mels)
        batch = np.zeros((len(mels), n_frames, mels[0].shape[1]), np.float32)
        for i, m in enumerate(mels):  # repeat-pad short windows instead of zero-padding
            reps = int(np.ceil(n_frames / max(1, m.shape[0])))
            batch[i] = np.tile(m, (reps, 1))[:n_frames]
        out = []
        with torch.no_grad():
            for i in range(0, len(batch), 64):
                out.append(self.encoder(torch.from_numpy(batch[i:i + 64])).cpu().numpy())
        emb = np.concatenate(out)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)

    # -- clustering --------------------------------------------------------------------------
    def _cluster(self, emb: np.ndarray) -> np.ndarray:
        """k-means on unit vectors (spherical); k = max_speakers, reduced while the two closest
        centroids are more similar than ``single_speaker_similarity`` (average linkage isolated
        single outlier windows instead of splitting speakers)."""
        from sklearn.cluster import KMeans

        k = min(self.max_speakers, len(emb))
        labels = np.zeros(len(emb), int)
        while k >= 2:
            labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(emb)
            c = np.stack([emb[labels == j].mean(0) for j in range(k)])
            c /= np.linalg.norm(c, axis=1, keepdims=True)
            sims = c @ c.T - 2 * np.eye(k)
            if sims.max() <= self.single_speaker_similarity:
                break
            k -= 1
            labels = np.zeros(len(emb), int)
        return labels

    # -- frames → segments -------------------------------------------------------------------
    def diarize(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[SpeakerSegment]:
        self.setup()
        speech = [(s, e) for s, e in speech if e > s]
        if not speech:
            return []
        wins = sliding_windows(speech, self.window_s, self.hop_s)
        labels = self._cluster(self._embed(audio, wins))
        return frames_to_segments(speech, wins, labels, self.min_segment_s)
