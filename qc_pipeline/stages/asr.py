"""ASR stage: faster-whisper per channel over packed speech spans, words mapped back to turns.

Each channel's speech spans (from the segment stage) are packed into windows of at most
``asr.window_s`` seconds of speech; each window is decoded once (one encoder pass instead
of one per turn), and word timestamps are mapped back to the original timeline.  Guards
drop subtitle-credit and silence hallucinations and collapse repeated-token loops.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.config import AsrConfig, VadConfig
from qc_pipeline.errors import CallError, Reason
from qc_pipeline.models import ResolvedModel, resolve_asr_model
from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, ROLE_UNKNOWN, CallRecord, SpeechSpan, Utterance, Word
from qc_pipeline.stages.base import Stage
from qc_pipeline.textnorm import collapse_loops, contains_credit, to_simplified
from qc_pipeline.turns import Turn, assign_to_turn, build_turns

log = logging.getLogger(__name__)


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """auto → cuda/float16 when CTranslate2 sees a GPU, else cpu/int8."""
    if device in ("auto", "cuda"):
        from qc_pipeline.gpu import preload_cuda12_libs

        preload_cuda12_libs()  # CUDA-13-only hosts: cuBLAS 12 / cuDNN 9 from the [gpu] extra's wheels
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def pack_windows(spans: list[SpeechSpan], window_s: float) -> list[list[SpeechSpan]]:
    """Group consecutive spans so each group holds at most ``window_s`` seconds of speech."""
    windows: list[list[SpeechSpan]] = []
    total = 0.0
    for span in spans:
        if windows and total + span.duration <= window_s:
            windows[-1].append(span)
            total += span.duration
        else:
            windows.append([span])
            total = span.duration
    return windows


@dataclass
class _Piece:
    """A decoded word with the segment-level scores it came from."""

    word: Word
    avg_logprob: float
    no_speech_prob: float


def _chunks(window: list[SpeechSpan]) -> list[dict]:
    return [{"start": int(s.start * SAMPLE_RATE), "end": int(s.end * SAMPLE_RATE)} for s in window]


class AsrStage(Stage):
    name = "asr"
    kinds = ("audio",)

    def __init__(self, cfg: AsrConfig, vad: VadConfig) -> None:
        self.cfg = cfg
        self.vad = vad
        self.model = None
        self.resolved: Optional[ResolvedModel] = None
        self.device = self.compute_type = ""
        self._batched = None

    @property
    def batch_size(self) -> int:
        """``asr.batch_size``; -1 = auto: 16 on GPU, 8 on CPU (measured on CPU: lower CER and 1.3–1.4x the
        throughput of sequential decoding); 0 = sequential with temperature fallback."""
        if self.cfg.batch_size >= 0:
            return self.cfg.batch_size
        return 16 if self.device == "cuda" else 8

    def setup(self) -> None:
        """Nothing heavy: the model loads on the first audio call, so chat-only batches never pay for
        it (``run_batch`` checks the model is installed before any worker starts when audio is queued)."""

    def load(self) -> None:
        from faster_whisper import WhisperModel

        self.resolved = resolve_asr_model(self.cfg.model)
        self.device, self.compute_type = pick_device(self.cfg.device, self.cfg.compute_type)
        log.info("loading %s from %s on %s/%s", self.resolved.name, self.resolved.path, self.device, self.compute_type)
        self.model = WhisperModel(str(self.resolved.path), device=self.device, compute_type=self.compute_type,
                                  cpu_threads=self.cfg.cpu_threads, local_files_only=True)

    # -- decoding -------------------------------------------------------------------------
    def _options(self, speech_s: float) -> dict:
        opts = dict(language=None if self.cfg.language == "auto" else self.cfg.language, beam_size=self.cfg.beam_size,
                    hotwords=self.cfg.hotwords or None, word_timestamps=True, vad_filter=False,
                    repetition_penalty=self.cfg.repetition_penalty, no_repeat_ngram_size=self.cfg.no_repeat_ngram_size)
        if self.cfg.max_tokens_per_s > 0:
            opts["max_new_tokens"] = min(440, int(self.cfg.max_tokens_per_s * speech_s) + 20)
        return opts

    def _decode_window(self, channel_audio: np.ndarray, window: list[SpeechSpan], drops: dict) -> list[_Piece]:
        """Sequential path: one ``transcribe`` per window (temperature fallback available)."""
        from faster_whisper.transcribe import restore_speech_timestamps

        chunks = _chunks(window)
        clip = np.concatenate([channel_audio[c["start"]:c["end"]] for c in chunks])
        segments, _info = self.model.transcribe(
            clip, condition_on_previous_text=False, temperature=list(self.cfg.temperatures),
            **self._options(len(clip) / SAMPLE_RATE))
        return self._pieces(restore_speech_timestamps(segments, chunks, SAMPLE_RATE), drops)

    def _decode_batched(self, items: list[tuple[np.ndarray, list[SpeechSpan], dict]]) -> list[list[_Piece]]:
        """Batched path (``asr.batch_size`` > 0, the default on GPU): windows — of every channel of a
        call, and of several calls when the executor hands over a group — go through faster-whisper's
        ``BatchedInferencePipeline`` in batches; one buffer holds the windows back to back and each
        window is one clip of it.  ``items``: (channel audio, window, that call's drop counters)."""
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.transcribe import restore_speech_timestamps

        if self._batched is None:
            self._batched = BatchedInferencePipeline(self.model)
        clips, offsets, pos = [], [], 0
        for channel_audio, window, _drops in items:
            clip = np.concatenate([channel_audio[c["start"]:c["end"]] for c in _chunks(window)])
            clips.append(clip)
            offsets.append(pos)
            pos += len(clip)
        buffer = np.concatenate(clips)
        stamps = [{"start": o / SAMPLE_RATE, "end": (o + len(c)) / SAMPLE_RATE} for o, c in zip(offsets, clips)]
        longest = max(len(c) for c in clips) / SAMPLE_RATE
        batch = self.batch_size
        while True:
            try:
                segments, _info = self._batched.transcribe(
                    buffer, clip_timestamps=stamps, batch_size=batch,
                    temperature=self.cfg.temperatures[0], **self._options(longest))
                segments = list(segments)
                break
            except RuntimeError as exc:
                if "out of memory" not in str(exc).lower():
                    raise
                if batch <= 1:
                    raise CallError(Reason.INTERNAL_ERROR, "GPU out of memory even at batch size 1; use a smaller "
                                    "model or compute_type (asr.compute_type=int8_float16)") from None
                log.warning("GPU out of memory at asr.batch_size=%d; retrying this call at %d. Set "
                            "--set asr.batch_size=%d to avoid the retries", batch, batch // 2, batch // 2)
                batch //= 2
        starts = [o / SAMPLE_RATE for o in offsets]
        # the batched pipeline stamps each segment with its clip's offset in frames (``seek``): exact, where
        # segment times may run past the clip's end (timestamps are not clamped to the clip)
        fps = self.model.frames_per_second
        seeks = [int(t * fps) for t in starts]
        by_clip: dict[int, list] = {}
        for seg in segments:
            k = max(0, int(np.searchsorted(seeks, seg.seek, side="right")) - 1)
            shift, length = starts[k], len(clips[k]) / SAMPLE_RATE

            def local(t: float) -> float:
                return min(max(t - shift, 0.0), length)

            words = [dataclasses.replace(w, start=local(w.start), end=local(w.end)) for w in seg.words or ()]
            by_clip.setdefault(k, []).append(
                dataclasses.replace(seg, start=local(seg.start), end=local(seg.end), words=words))
        out: list[list[_Piece]] = []
        for k, (_audio, window, drops) in enumerate(items):
            restored = restore_speech_timestamps(by_clip.get(k, []), _chunks(window), SAMPLE_RATE)
            out.append(self._pieces(restored, drops))
        return out

    def _pieces(self, segments, drops: dict) -> list[_Piece]:
        """Guards on decoded segments → words with their segment scores."""
        pieces: list[_Piece] = []
        for seg in segments:
            text = seg.text.strip()
            if not text or not seg.words:
                continue
            if contains_credit(to_simplified(text), self.cfg.credit_phrases):
                drops["hallucination_credit"] = drops.get("hallucination_credit", 0) + 1
                continue
            if seg.no_speech_prob > self.cfg.max_no_speech_prob and seg.avg_logprob < self.cfg.min_avg_logprob:
                drops["hallucination_silence"] = drops.get("hallucination_silence", 0) + 1
                continue
            for w in seg.words:
                pieces.append(_Piece(Word(round(w.start, 3), round(w.end, 3), w.word, round(w.probability, 4)),
                                     seg.avg_logprob, seg.no_speech_prob))
        kept, removed = collapse_loops(pieces, key=lambda p: p.word.word, max_repeats=self.cfg.max_repeats)
        if removed:
            drops["repetition_loop_words"] = drops.get("repetition_loop_words", 0) + removed
        return kept

    # -- assembly -------------------------------------------------------------------------
    @staticmethod
    def _role(turn: Turn) -> str:
        """Stereo turns carry their role as speaker; diarized speakers get roles in the role stage."""
        return turn.speaker if turn.speaker in (ROLE_AGENT, ROLE_CUSTOMER) else ROLE_UNKNOWN

    def _windows(self, record: CallRecord) -> list[tuple[int, list[SpeechSpan]]]:
        return [(ch, w) for ch in range(record.audio.shape[0])
                for w in pack_windows([s for s in record.spans if s.channel == ch], self.cfg.window_s)]

    def process(self, record: CallRecord) -> CallRecord:
        if self.model is None:
            self.load()
        drops: dict[str, int] = {}
        windows = self._windows(record)
        if self.batch_size > 0 and windows:
            pieces = self._decode_batched([(record.audio[ch], w, drops) for ch, w in windows])
        else:
            pieces = [self._decode_window(record.audio[ch], w, drops) for ch, w in windows]
        return self._assemble(record, [(ch, p) for (ch, _w), ps in zip(windows, pieces) for p in ps], drops)

    def process_many(self, records: list[CallRecord]) -> list[CallRecord]:
        """Several calls' windows in one batched pass (cross-call batching keeps a GPU busy when calls
        are short).  Sequential decoding (``batch_size`` 0) just goes call by call."""
        if self.batch_size <= 0:
            return [self.process(r) for r in records]
        if self.model is None:
            self.load()
        drops: list[dict[str, int]] = [{} for _ in records]
        windows = [self._windows(r) for r in records]
        items = [(r.audio[ch], w, d) for r, ws, d in zip(records, windows, drops) for ch, w in ws]
        decoded = iter(self._decode_batched(items) if items else [])
        out = []
        for record, ws, d in zip(records, windows, drops):
            pieces = [(ch, p) for ch, _w in ws for p in next(decoded)]
            out.append(self._assemble(record, pieces, d))
        return out

    def _assemble(self, record: CallRecord, decoded: list[tuple[int, _Piece]], drops: dict) -> CallRecord:
        """Decoded words → turns → utterances."""
        # Without known speakers (mono, no diarizer) every speech span stays its own turn.
        known = all(s.speaker != ROLE_UNKNOWN for s in record.spans)
        turns = build_turns(record.spans, self.vad.turn_gap_s if known else 0.0)
        per_turn: dict[int, list[_Piece]] = {}
        for ch, piece in decoded:
            idx = assign_to_turn(turns, ch, piece.word.start, piece.word.end)
            if idx >= 0:
                per_turn.setdefault(idx, []).append(piece)
        utterances: list[Utterance] = []
        for idx, turn in enumerate(turns):
            pieces = per_turn.get(idx)
            if not pieces:
                drops["empty_turn"] = drops.get("empty_turn", 0) + 1
                continue
            raw = "".join(p.word.word for p in pieces).strip()
            text = to_simplified(raw) if self.cfg.simplified else raw
            if not text:
                drops["empty_turn"] = drops.get("empty_turn", 0) + 1
                continue
            words = tuple(
                Word(p.word.start, p.word.end, to_simplified(p.word.word) if self.cfg.simplified else p.word.word,
                     p.word.probability) for p in pieces)
            utterances.append(Utterance(
                turn_index=len(utterances), role=self._role(turn), channel=turn.channel,
                start=turn.start, end=turn.end, text=text, speaker=turn.speaker,
                avg_logprob=round(float(np.mean([p.avg_logprob for p in pieces])), 4),
                no_speech_prob=round(float(np.mean([p.no_speech_prob for p in pieces])), 4),
                words=words))
        record = record.with_drops(drops).replace(utterances=tuple(utterances))
        if not utterances:
            record = record.with_flag("no_transcript")
        return record
