"""A scripted backend: no model, deterministic output, for testing the ASR stage's own logic.

Each clip is "recognised" by a function of its audio; by default every stretch of non-zero samples
becomes one word ``w<k>`` whose times are exactly that stretch, so a test can check that words land at
the right place on the call's timeline after window packing.  ``oom_above`` makes batches larger than
that raise :class:`AsrOutOfMemory`, like a GPU that is too small.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from qc_pipeline.asr.base import AsrBackend, AsrOutOfMemory, Segment, Word
from qc_pipeline.audio import SAMPLE_RATE


def words_from_bursts(clip: np.ndarray) -> list[Segment]:
    """One word per run of non-zero samples, named by its order in the clip, times = the run's edges."""
    voiced = np.flatnonzero(np.abs(clip) > 0)
    if not len(voiced):
        return []
    breaks = np.flatnonzero(np.diff(voiced) > 1)
    starts = np.concatenate(([voiced[0]], voiced[breaks + 1]))
    ends = np.concatenate((voiced[breaks], [voiced[-1]])) + 1
    words = tuple(Word(round(s / SAMPLE_RATE, 3), round(e / SAMPLE_RATE, 3), f"w{k}", 0.9)
                  for k, (s, e) in enumerate(zip(starts, ends)))
    return [Segment(words[0].start, words[-1].end, "".join(w.word for w in words), words, -0.2, 0.01)]


class FakeAsrBackend(AsrBackend):
    def __init__(self, recognise: Callable[[np.ndarray], list[Segment]] = words_from_bursts, *,
                 device: str = "cpu", oom_above: Optional[int] = None, model_id: str = "fake") -> None:
        self.recognise = recognise
        self.device = device
        self.oom_above = oom_above
        self.model_id = model_id
        self.sha256 = ""
        self.calls: list[tuple[int, int]] = []   # (number of clips, batch_size) per transcribe() call
        self.loaded = False

    def load(self) -> None:
        self.loaded = True

    def transcribe(self, clips: Sequence[np.ndarray], language: Optional[str], batch_size: int) -> list[list[Segment]]:
        self.calls.append((len(clips), batch_size))
        if self.oom_above is not None and batch_size > self.oom_above:
            raise AsrOutOfMemory(f"CUDA failed with error out of memory (batch {batch_size})")
        return [self.recognise(c) for c in clips]
