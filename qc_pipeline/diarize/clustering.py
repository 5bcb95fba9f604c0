"""How many speakers, and which window is whose: clustering of unit speaker embeddings.

1. Average-linkage agglomerative clustering on cosine similarity, stopped at ``threshold`` - set high
   enough that a voice may come out in several pieces, never two voices in one.
2. Pieces are then joined while they look like one voice:
   * a piece with less than ``min_speaker_s`` of speech is not a speaker of its own: its windows go to
     the nearest centroid (a cough, a laugh, windows over an overlap or a turn change);
   * two pieces whose *normalised* similarity - the mean similarity between their windows divided by
     the geometric mean of the similarity within each - is at least ``same_speaker_ratio`` are one
     voice.  Raw cosine similarity between two halves of one voice drops with how noisy and short its
     windows are (0.58-0.66 at worst on the dev set, as low as two different voices); relative to each
     half's own consistency a voice split in two scores 0.86-0.95 at 16 and 8 kHz, two different voices
     0.55-0.75.  Only window pairs that do not overlap in time count (overlapping windows share audio).
     A piece with little speech (n independent windows) is measured less surely: it needs a ratio
     ``SMALL_PIECE_SLACK / sqrt(n)`` lower to stay apart;
   * at most ``max_speakers`` pieces: the most similar pair merges until it fits.
A single voice therefore becomes two speakers only when both halves are long and clearly unlike each
other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


SMALL_PIECE_SLACK = 0.15  # see the module docstring
MAX_WINDOWS = 2000        # clustered directly (a 25-minute call); longer calls: an even sample of them


@dataclass(frozen=True)
class ClusterParams:
    threshold: float           # diarization.cluster_threshold
    same_speaker_ratio: float  # diarization.same_speaker_ratio
    min_speaker_s: float       # diarization.min_speaker_s

    @classmethod
    def from_config(cls, cfg) -> "ClusterParams":
        return cls(cfg.cluster_threshold, cfg.same_speaker_ratio, cfg.min_speaker_s)


def _union_s(wins: Sequence[tuple[float, float]]) -> float:
    total, last = 0.0, -np.inf
    for s, e in sorted(wins):
        s = max(s, last)
        if e > s:
            total += e - s
            last = e
    return total


def _centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    c = np.stack([emb[labels == j].mean(0) for j in range(k)])
    return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-9)


def _compact(labels: np.ndarray) -> np.ndarray:
    _, inv = np.unique(labels, return_inverse=True)
    return inv.astype(int)


def assign_nearest(emb: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    if len(emb) == 0:
        return np.zeros(0, int)
    return (emb @ centroids.T).argmax(1).astype(int)


def normalised_similarity(sim: np.ndarray, apart: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, k): mean between-piece similarity / sqrt(within_a * within_b) over non-overlapping window
    pairs; a piece without such pairs inside borrows the median within-similarity of the others."""
    one = np.eye(k, dtype=bool)[labels]            # (n, k) membership
    pairs = one.T.astype(float) @ apart.astype(float) @ one.astype(float)
    sums = one.T.astype(float) @ (sim * apart) @ one.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / pairs
    within = np.diag(mean).copy()
    known = within[np.isfinite(within) & (within > 0)]
    fill = float(np.median(known)) if len(known) else 1.0
    within[~(np.isfinite(within) & (within > 0))] = fill
    ratio = mean / np.sqrt(np.outer(within, within))
    ratio[~np.isfinite(ratio)] = -1.0
    np.fill_diagonal(ratio, -np.inf)
    return ratio


def cluster_speakers(emb: np.ndarray, wins: Sequence[tuple[float, float]], max_speakers: int,
                     p: ClusterParams) -> tuple[np.ndarray, np.ndarray]:
    """(label per window, unit centroid per speaker) for unit embeddings ``emb`` of windows ``wins``."""
    n = len(emb)
    if n <= 1:
        return np.zeros(n, int), emb[:1].copy()
    from scipy.cluster.hierarchy import fcluster, linkage

    # at most max_windows windows, evenly spread over the call; the rest join the nearest centroid at the end
    pick = np.unique(np.linspace(0, n - 1, min(n, MAX_WINDOWS)).round().astype(int))
    e, w = emb[pick], [wins[i] for i in pick]
    labels = _compact(fcluster(linkage(e, method="average", metric="cosine"), t=1.0 - p.threshold,
                               criterion="distance"))
    sim = e @ e.T
    window_s = float(np.median([t - s for s, t in w]))
    starts = np.array([s for s, _ in w])
    ends = np.array([t for _, t in w])
    apart = (starts[:, None] >= ends[None, :]) | (starts[None, :] >= ends[:, None])
    while True:
        k = int(labels.max()) + 1
        if k == 1:
            break
        speech = np.array([_union_s([x for x, lab in zip(w, labels) if lab == j]) for j in range(k)])
        small = int(speech.argmin())
        if speech[small] < p.min_speaker_s:
            c = _centroids(e, labels, k)
            keep = np.array([j for j in range(k) if j != small])
            moved = labels == small
            labels[moved] = keep[assign_nearest(e[moved], c[keep])]
        else:
            # a piece with little speech gives a noisy ratio: it needs to be that much more unlike to stay
            independent = np.maximum(speech / window_s, 1.0)
            need = p.same_speaker_ratio - SMALL_PIECE_SLACK / np.sqrt(np.minimum.outer(independent, independent))
            margin = normalised_similarity(sim, apart, labels, k) - need
            a, b = np.unravel_index(int(margin.argmax()), margin.shape)
            if margin[a, b] < 0 and k <= max_speakers:
                break
            labels[labels == max(a, b)] = min(a, b)
        labels = _compact(labels)
    k = int(labels.max()) + 1
    centroids = _centroids(e, labels, k)
    full = np.empty(n, int)
    full[pick] = labels
    rest = np.setdiff1d(np.arange(n), pick)
    full[rest] = assign_nearest(emb[rest], centroids)
    return full, centroids
