"""The ASR backend contract (shape of lhotse's forced-alignment base; result records like faster-whisper's).

A backend turns a list of 16 kHz mono clips into segments with word timings, **times relative to each
clip**.  Everything call-level — packing speech spans into clips, mapping clip times back to the call,
hallucination/loop guards, confidence, turn assembly, halving the batch on GPU out-of-memory — is the
ASR stage's own code (``qc_pipeline.stages.asr``), so it works the same for every backend and is tested
with :class:`~qc_pipeline.asr.fake.FakeAsrBackend`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from qc_pipeline.records import Word

__all__ = ["AsrBackend", "AsrOutOfMemory", "Segment", "Word"]


@dataclass(frozen=True)
class Segment:
    """One decoded segment of a clip; ``start``/``end`` and the words' times are seconds into the clip."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    avg_logprob: float = 0.0      # mean token log-probability (0 = certain)
    no_speech_prob: float = 0.0


class AsrOutOfMemory(RuntimeError):
    """The accelerator ran out of memory for this batch; the stage retries with half the batch size."""


class AsrBackend(ABC):
    """``load()`` once per worker; ``transcribe()`` any number of times."""

    model_id: str = ""     # what is written to sessions.asr_model
    sha256: str = ""       # of the weights file when known (sessions.asr_model_sha256)
    device: str = "cpu"    # cpu | cuda, known after load()

    @abstractmethod
    def load(self) -> None:
        """Load the model (heavy imports happen here, not at import time)."""

    @abstractmethod
    def transcribe(self, clips: Sequence[np.ndarray], language: Optional[str],
                   batch_size: int) -> list[list[Segment]]:
        """Segments per clip, in clip order.  ``batch_size`` > 0: clips may be decoded together in batches of
        that size (raise :class:`AsrOutOfMemory` when they do not fit); 0: one clip at a time."""

    @property
    def uses_gpu(self) -> bool:
        return self.device == "cuda"
