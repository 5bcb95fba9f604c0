"""Window labels -> speaker segments: a centre-weighted vote per 10 ms frame, short runs folded away."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qc_pipeline.diarize.base import SpeakerSegment, name_by_first_appearance

FRAME_S = 0.01


def sliding_windows(spans: Sequence[tuple[float, float]], window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Windows of ``window_s`` every ``hop_s`` inside each span (the last one flush with its end); a
    span no longer than a window is one window."""
    wins = []
    for start, end in spans:
        if end - start <= window_s:
            wins.append((start, end))
            continue
        t = start
        while t + window_s < end - 1e-6:
            wins.append((t, t + window_s))
            t += hop_s
        wins.append((end - window_s, end))
    return wins


def frames_to_segments(speech: Sequence[tuple[float, float]], wins: Sequence[tuple[float, float]],
                       labels: np.ndarray, min_segment_s: float) -> list[SpeakerSegment]:
    """Every frame of every speech span takes the label with the most (Hann-weighted) votes of the
    windows covering it; inside a span, runs shorter than ``min_segment_s`` merge into the longer
    neighbour.  Speakers are named spk0, spk1, ... in order of first appearance."""
    return name_segments(label_runs(speech, wins, labels, min_segment_s))


def name_segments(raw: Sequence[tuple[float, float, int]]) -> list[SpeakerSegment]:
    """(start, end, label) runs -> segments named spk0, spk1, ... by first appearance; touching runs
    of one speaker become one segment."""
    raw = sorted(raw)
    names = name_by_first_appearance([lab for *_, lab in raw])
    out: list[SpeakerSegment] = []
    for s, e, lab in raw:
        if out and out[-1].speaker == names[lab] and s - out[-1].end < 1e-3:
            out[-1] = SpeakerSegment(out[-1].start, e, names[lab])
        else:
            out.append(SpeakerSegment(s, e, names[lab]))
    return out


def label_runs(speech: Sequence[tuple[float, float]], wins: Sequence[tuple[float, float]],
               labels: np.ndarray, min_segment_s: float) -> list[tuple[float, float, int]]:
    """The frame vote of :func:`frames_to_segments`, as (start, end, label) runs."""
    if not len(wins):
        return []
    n_spk = int(labels.max()) + 1
    total = int(np.ceil(max(e for _, e in speech) / FRAME_S)) + 1
    votes = np.zeros((total, n_spk), np.float32)
    for (s, e), lab in zip(wins, labels):
        a, b = int(s / FRAME_S), max(int(s / FRAME_S) + 1, int(np.ceil(e / FRAME_S)))
        votes[a:b, lab] += np.hanning(b - a + 2)[1:-1]  # window edges are the least reliable
    raw: list[tuple[float, float, int]] = []
    for start, end in speech:
        a = int(start / FRAME_S)
        b = max(a + 1, int(np.ceil(end / FRAME_S)))
        span_votes = votes[a:b]
        if not span_votes.any():  # no window covers this span
            continue
        frame_labels = span_votes.argmax(1)
        runs = merge_short(runs_of(frame_labels), int(min_segment_s / FRAME_S))
        for lab, ra, rb in runs:
            seg_start = start if ra == 0 else (a + ra) * FRAME_S
            seg_end = end if rb == len(frame_labels) else (a + rb) * FRAME_S
            raw.append((round(seg_start, 3), round(seg_end, 3), lab))
    return raw


def runs_of(labels: np.ndarray) -> list[list[int]]:
    """[label, start, end) runs of equal consecutive labels."""
    runs: list[list[int]] = []
    for i, lab in enumerate(labels):
        if runs and runs[-1][0] == lab:
            runs[-1][2] = i + 1
        else:
            runs.append([int(lab), i, i + 1])
    return runs


def merge_short(runs: list[list[int]], min_frames: int) -> list[list[int]]:
    """Fold runs shorter than ``min_frames`` into the longer neighbour, until none is left."""
    runs = [r[:] for r in runs]
    while len(runs) > 1:
        lengths = [r[2] - r[1] for r in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_frames:
            break
        if i == 0:
            j = 1
        elif i == len(runs) - 1:
            j = i - 1
        else:
            j = i - 1 if lengths[i - 1] >= lengths[i + 1] else i + 1
        a, b = min(i, j), max(i, j)
        runs[a] = [runs[j][0], runs[a][1], runs[b][2]]
        del runs[b]
        k = 0  # neighbours may now share a label
        while k < len(runs) - 1:
            if runs[k][0] == runs[k + 1][0]:
                runs[k][2] = runs[k + 1][2]
                del runs[k + 1]
            else:
                k += 1
    return runs
