"""What every diarization backend returns, and the protocol it implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class SpeakerSegment:
    start: float
    end: float
    speaker: str  # "spk0", "spk1", ... in order of first appearance


class Diarizer(Protocol):
    def setup(self) -> None:
        """Load the model (idempotent); called on the first mono call, never for stereo-only batches."""
        ...

    def diarize(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[SpeakerSegment]:
        """``audio``: one channel, 16 kHz float32; ``speech``: VAD intervals in seconds."""
        ...


def name_by_first_appearance(labels: Iterable[Hashable]) -> dict[Hashable, str]:
    """Cluster ids -> "spk0", "spk1", ... in the order they first occur in ``labels`` (time order)."""
    names: dict[Hashable, str] = {}
    for lab in labels:
        names.setdefault(lab, f"spk{len(names)}")
    return names
