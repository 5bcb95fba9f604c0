"""faster-whisper (CTranslate2 Whisper) backend.

Sequential decoding (``batch_size`` 0) runs ``WhisperModel.transcribe`` once per clip with the
temperature fallback; batched decoding puts the clips back to back in one buffer and runs
``BatchedInferencePipeline`` with one ``clip_timestamps`` entry per clip, then splits the segments
back per clip (by each segment's ``seek``, exact where segment times can run past a clip's end).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from qc_pipeline.asr.base import AsrBackend, AsrOutOfMemory, Segment, Word
from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.config import AsrConfig
from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

# How CTranslate2 reports a GPU that is out of memory: its allocator says so, its thrust kernels (parallel_for)
# say cudaErrorInvalidDevice.  Seen on an H200 at the retry after an out-of-memory error (docs/gpu.md); measured
# elsewhere as the same starved-card condition, alternating with the first message
# (github.com/homelab-00/TranscriptionSuite/pull/268).
OOM_MESSAGES = ("out of memory", "cudaerrorinvaliddevice")


NO_GPU = "CTranslate2 sees no GPU (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides it)"


def cuda_problem() -> Optional[str]:
    """Why CTranslate2 cannot decode on a GPU here: :data:`NO_GPU`, or a visible GPU without cuBLAS 12 (the
    text names the fix); None when it can."""
    import ctranslate2

    from qc_pipeline.gpu import CUBLAS, GPU_INSTALL, cublas_loadable, preload_cuda12_libs

    preload_cuda12_libs()  # CUDA-13-only hosts: cuBLAS 12 from the [gpu] extra's wheel
    if ctranslate2.get_cuda_device_count() == 0:
        return NO_GPU
    if not cublas_loadable():
        return f"a GPU is visible but CTranslate2 cannot open {CUBLAS} (a CUDA-13-only host?): {GPU_INSTALL} (docs/gpu.md)"
    return None


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """auto → cuda/float16 when CTranslate2 sees a GPU and can open cuBLAS, else cpu/int8.  ``cuda`` without
    a GPU or without cuBLAS is a SetupError naming the fix (otherwise every call would fail at model load or
    at its first matrix product)."""
    if device in ("auto", "cuda"):
        problem = cuda_problem()
        if problem is not None and device == "cuda":
            fix = "; set asr.device=auto or cpu" if problem == NO_GPU else ""
            raise SetupError(f"asr.device is cuda, but {problem}{fix}")
        if problem is not None and problem != NO_GPU:
            log.warning("%s; decoding on the CPU meanwhile", problem)
        device = "cpu" if problem is not None else "cuda"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def _segment(seg, shift: float = 0.0, length: Optional[float] = None) -> Segment:
    """faster-whisper segment → ours, times moved by ``-shift`` and clamped to [0, length]."""
    def t(x: float) -> float:
        x = max(x - shift, 0.0)
        return min(x, length) if length is not None else x

    words = tuple(Word(t(w.start), t(w.end), w.word, w.probability) for w in seg.words or ())
    return Segment(t(seg.start), t(seg.end), seg.text, words, seg.avg_logprob, seg.no_speech_prob)


def _model_class():
    """``WhisperModel`` whose encoder takes a batch of windows one window at a time on CPU.  There a window
    (1500 frames) already gives the encoder's matrix products all the rows they can use, so a batch buys no
    speed, while the attention buffers grow with it (~70 MB a window at whisper-base): 4 windows encoded
    together peaked 260 MB higher than one at a time and took 2.8 s of CPU instead of 2.35 s, for
    bit-identical outputs."""
    from faster_whisper import WhisperModel

    class WindowwiseEncoder(WhisperModel):
        def encode(self, features: np.ndarray):
            if self.model.device != "cpu" or features.ndim == 2 or len(features) == 1:
                return super().encode(features)
            import ctranslate2

            parts = [np.asarray(super(WindowwiseEncoder, self).encode(f[None])) for f in features]
            return ctranslate2.StorageView.from_array(np.concatenate(parts))

    return WindowwiseEncoder


class FasterWhisperBackend(AsrBackend):
    def __init__(self, cfg: AsrConfig) -> None:
        self.cfg = cfg
        self.model = None
        self._batched = None
        self.compute_type = ""

    gpu_problem = staticmethod(cuda_problem)   # for asr.registry.backend_gpu_problem

    @staticmethod
    def would_use_gpu(cfg: AsrConfig) -> bool:
        """Without loading the model: does this config decode on a GPU here?  (auto only asks: the warning
        about a CPU fallback comes from the model load that falls back, not from this question.)"""
        if cfg.device == "cpu":
            return False
        try:
            if cfg.device == "auto":
                return cuda_problem() is None
            return pick_device(cfg.device, cfg.compute_type)[0] == "cuda"
        except ImportError:  # no ctranslate2: nothing runs at all, certainly not on a GPU
            return False

    def load(self) -> None:
        from qc_pipeline.asr.install import resolve_asr_model

        resolved = resolve_asr_model(self.cfg.model)
        self.model_id, self.sha256 = resolved.name, resolved.sha256
        self.device, self.compute_type = pick_device(self.cfg.device, self.cfg.compute_type)
        log.info("loading %s from %s on %s/%s", resolved.name, resolved.path, self.device, self.compute_type)
        self.model = _model_class()(str(resolved.path), device=self.device, compute_type=self.compute_type,
                                    cpu_threads=self.cfg.cpu_threads, local_files_only=True)

    def _options(self, language: Optional[str], speech_s: float) -> dict:
        c = self.cfg
        opts = dict(language=language, beam_size=c.beam_size, hotwords=c.hotwords or None, word_timestamps=True,
                    vad_filter=False, repetition_penalty=c.repetition_penalty,
                    no_repeat_ngram_size=c.no_repeat_ngram_size, condition_on_previous_text=False,
                    log_prob_threshold=c.fallback_logprob, compression_ratio_threshold=c.fallback_compression_ratio)
        if c.max_tokens_per_s > 0:
            opts["max_new_tokens"] = min(440, int(c.max_tokens_per_s * speech_s) + 20)
        return opts

    def transcribe(self, clips: Sequence[np.ndarray], language: Optional[str], batch_size: int) -> list[list[Segment]]:
        """BLAS (the mel spectrogram's matrix product) runs on the thread count the worker pinned
        (``executors.base.pin_threads``, ``asr.cpu_threads``, the same as CTranslate2's), in a local worker
        and a Ray actor alike, so the decoded text does not depend on the engine."""
        if not clips:
            return []
        if batch_size <= 0:
            return [self._one(c, language) for c in clips]
        try:
            return self._batch(clips, language, batch_size)
        except RuntimeError as exc:
            if any(m in str(exc).lower() for m in OOM_MESSAGES):
                raise AsrOutOfMemory(str(exc)) from None
            raise

    def _one(self, clip: np.ndarray, language: Optional[str]) -> list[Segment]:
        """One clip with whisper's temperature fallback.  Sampling at a fallback temperature is random: the
        seed is reset per clip so a clip decodes the same whichever worker, batch or order it comes in."""
        import ctranslate2

        ctranslate2.set_random_seed(0)
        segments, _info = self.model.transcribe(clip, temperature=list(self.cfg.temperatures),
                                                **self._options(language, len(clip) / SAMPLE_RATE))
        return [_segment(s) for s in segments]

    def _batch(self, clips: Sequence[np.ndarray], language: Optional[str], batch_size: int) -> list[list[Segment]]:
        from faster_whisper import BatchedInferencePipeline

        if self._batched is None:
            self._batched = BatchedInferencePipeline(self.model)
        offsets = np.cumsum([0] + [len(c) for c in clips[:-1]])
        stamps = [{"start": o / SAMPLE_RATE, "end": (o + len(c)) / SAMPLE_RATE} for o, c in zip(offsets, clips)]
        longest = max(len(c) for c in clips) / SAMPLE_RATE
        segments, _info = self._batched.transcribe(
            np.concatenate(clips), clip_timestamps=stamps, batch_size=batch_size,
            temperature=self.cfg.temperatures[0], **self._options(language, longest))
        # each segment carries its clip's offset in frames (``seek``); its times may run past the clip's end
        starts = [o / SAMPLE_RATE for o in offsets]
        seeks = [int(t * self.model.frames_per_second) for t in starts]
        out: list[list[Segment]] = [[] for _ in clips]
        for seg in segments:
            k = max(0, int(np.searchsorted(seeks, seg.seek, side="right")) - 1)
            out[k].append(_segment(seg, starts[k], len(clips[k]) / SAMPLE_RATE))
        return out
