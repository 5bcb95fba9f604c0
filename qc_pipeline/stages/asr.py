"""ASR stage: an ASR backend per channel over packed speech spans, words mapped back to turns.

Each channel's speech spans (from the segment stage) are packed into windows of at most
``asr.window_s`` seconds of speech; each window becomes one clip (its spans back to back) for the
backend (``asr.backend``, see :mod:`qc_pipeline.asr`), which returns segments with times relative to
the clip.  This stage maps those times back to the call's timeline, drops subtitle-credit, prompt-echo
and silence hallucinations, collapses repeated-token loops, marks low-confidence utterances and
assembles the turns.  A GPU out-of-memory error halves the batch and retries.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from qc_pipeline.asr.base import AsrBackend, AsrOutOfMemory, Segment
from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.config import AsrConfig, VadConfig
from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import (
    FLAG_LOW_ASR_CONFIDENCE,
    ROLE_AGENT,
    ROLE_CUSTOMER,
    ROLE_UNKNOWN,
    CallRecord,
    SpeechSpan,
    Utterance,
    Word,
    low_confidence_share,
)
from qc_pipeline.stages.base import Stage
from qc_pipeline.textnorm import collapse_loops, contains_credit, to_simplified
from qc_pipeline.turns import Turn, assign_to_turn, build_turns

log = logging.getLogger(__name__)

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


class Window:
    """One clip cut from a channel: its spans' samples back to back, and the map from clip time to call time."""

    def __init__(self, channel_audio: np.ndarray, spans: list[SpeechSpan]) -> None:
        bounds = [(int(s.start * SAMPLE_RATE), int(s.end * SAMPLE_RATE)) for s in spans]
        self.clip = np.concatenate([channel_audio[a:b] for a, b in bounds])
        lengths = [b - a for a, b in bounds]
        self._clip_ends = list(np.cumsum(lengths))                              # samples, in the clip
        self._shift = [a - (end - n) for (a, _b), end, n in zip(bounds, self._clip_ends, lengths)]

    def chunk_of(self, t: float) -> int:
        """Which span a clip time falls in (a time on a boundary belongs to the later span)."""
        return min(bisect.bisect_right(self._clip_ends, int(t * SAMPLE_RATE)), len(self._clip_ends) - 1)

    def to_call(self, t: float, chunk: int) -> float:
        """Clip time → call time, measured within span ``chunk``."""
        return round(t + self._shift[chunk] / SAMPLE_RATE, 3)

    def word_to_call(self, w: Word) -> Word:
        """Both ends of a word are mapped through the span its middle falls in, so a word never straddles the
        silence cut out between two spans."""
        k = self.chunk_of((w.start + w.end) / 2)
        return Word(self.to_call(w.start, k), self.to_call(w.end, k), w.word, round(w.probability, 4))


@dataclass(frozen=True)
class _Piece:
    """A decoded word (call timeline) with the segment-level scores it came from."""

    word: Word
    avg_logprob: float
    no_speech_prob: float


def _count(drops: dict, key: str, n: int = 1) -> None:
    drops[key] = drops.get(key, 0) + n


class AsrStage(Stage):
    name = "asr"
    kinds = ("audio",)

    def __init__(self, cfg: AsrConfig, vad: VadConfig, backend: Optional[AsrBackend] = None) -> None:
        self.cfg = cfg
        self.vad = vad
        self.backend = backend
        self._loaded = False
        self._prompts = tuple(p for p in (cfg.hotwords,) if p)

    @property
    def batch_size(self) -> int:
        """``asr.batch_size``; -1 = auto: 16 on GPU, 4 on CPU; 0 = sequential with temperature fallback.
        On CPU batched decoding gave lower CER and 1.3–1.4x the throughput of sequential decoding; past 4
        windows the decoder's CPU time per window hardly drops (0.96 s at 4, 0.93 s at 8, whisper-base, one
        thread) while its memory keeps growing (~65 MB a window): a 5-minute stereo call peaked at 1.5 GB
        per worker with 8, 0.84 GB with 4, for the same CPU time."""
        if self.cfg.batch_size >= 0:
            return self.cfg.batch_size
        return 16 if self.backend is not None and self.backend.uses_gpu else 4

    def setup(self) -> None:
        """Nothing heavy: the model loads on the first audio call, so chat-only batches never pay for
        it (``run_batch`` checks the model is installed before any worker starts when audio is queued).
        ``asr.device: cuda`` is checked here, in every worker and Ray actor: a GPU that CTranslate2 cannot use
        is a SetupError before the first call, not an error row on every call."""
        if self.cfg.device == "cuda":
            from qc_pipeline.asr.registry import backend_uses_gpu

            backend_uses_gpu(self.cfg)

    def load(self) -> None:
        if self.backend is None:
            from qc_pipeline.asr.registry import make_backend

            self.backend = make_backend(self.cfg)
        self.backend.load()
        self._loaded = True

    # -- decoding -------------------------------------------------------------------------
    def _transcribe(self, windows: list[Window]) -> list[list[Segment]]:
        """All windows through the backend; on out-of-memory the batch is halved until it fits."""
        if not self._loaded:
            self.load()
        if not windows:
            return []
        language = None if self.cfg.language == "auto" else self.cfg.language
        batch = self.batch_size
        while True:
            try:
                return self.backend.transcribe([w.clip for w in windows], language, batch)
            except AsrOutOfMemory as exc:
                if batch <= 1:
                    raise CallError(Reason.INTERNAL_ERROR, f"GPU out of memory even at batch size 1 ({exc}); use a "
                                    "smaller model or compute_type (asr.compute_type=int8_float16)") from None
                log.warning("GPU out of memory at asr.batch_size=%d; retrying this call at %d. Set "
                            "--set asr.batch_size=%d to avoid the retries", batch, batch // 2, batch // 2)
                batch //= 2

    def _needs_fallback(self, segments: list[Segment]) -> bool:
        """Whisper's own retry criteria, which batched decoding skips: a mean token log-prob under
        ``asr.fallback_logprob``, or output the guards would cut (a repeated-token loop, a segment that looks
        like silence inside what VAD called speech)."""
        if not segments:
            return False
        words = [w.word for s in segments for w in s.words]
        return (float(np.mean([s.avg_logprob for s in segments])) < self.cfg.fallback_logprob
                or any(s.no_speech_prob > self.cfg.max_no_speech_prob and s.avg_logprob < self.cfg.min_avg_logprob
                       for s in segments)
                or collapse_loops(words, max_repeats=self.cfg.max_repeats)[1] > 0)

    def _with_fallback(self, windows: list[Window], decoded: list[list[Segment]]) -> list[list[Segment]]:
        """Batched decoding has no temperature fallback; windows that need it are decoded again one by one
        with ``asr.temperatures`` (a handful of windows, typically short band-limited clips)."""
        if self.batch_size <= 0 or len(self.cfg.temperatures) < 2:
            return decoded
        redo = [i for i, segs in enumerate(decoded) if self._needs_fallback(segs)]
        if not redo:
            return decoded
        language = None if self.cfg.language == "auto" else self.cfg.language
        again = self.backend.transcribe([windows[i].clip for i in redo], language, 0)
        out = list(decoded)
        for i, segs in zip(redo, again):
            out[i] = segs
        return out

    def _is_prompt_echo(self, text: str) -> bool:
        """A segment that only repeats the configured hotwords (whisper echoing its prompt)."""
        squashed = "".join(ch for ch in text if ch.isalnum())
        return bool(squashed) and any(squashed in "".join(ch for ch in p if ch.isalnum()) for p in self._prompts)

    def _pieces(self, window: Window, segments: list[Segment], drops: dict) -> list[_Piece]:
        """Guards on one window's segments → words on the call timeline with their segment scores."""
        pieces: list[_Piece] = []
        for seg in segments:
            text = seg.text.strip()
            if not text or not seg.words:
                continue
            if contains_credit(to_simplified(text), self.cfg.credit_phrases):
                _count(drops, "hallucination_credit")
                continue
            if self._is_prompt_echo(text):
                _count(drops, "prompt_echo")
                continue
            if seg.no_speech_prob > self.cfg.max_no_speech_prob and seg.avg_logprob < self.cfg.min_avg_logprob:
                _count(drops, "hallucination_silence")
                continue
            pieces.extend(_Piece(window.word_to_call(w), seg.avg_logprob, seg.no_speech_prob) for w in seg.words)
        kept, removed = collapse_loops(pieces, key=lambda p: p.word.word, max_repeats=self.cfg.max_repeats)
        if removed:
            _count(drops, "repetition_loop_words", removed)
        return kept

    def _windows(self, record: CallRecord) -> list[tuple[int, Window]]:
        return [(ch, Window(record.audio[ch], spans)) for ch in range(record.audio.shape[0])
                for spans in pack_windows([s for s in record.spans if s.channel == ch], self.cfg.window_s)]

    def process(self, record: CallRecord) -> CallRecord:
        return self.process_many([record])[0]

    def process_many(self, records: list[CallRecord]) -> list[CallRecord]:
        """Several calls' windows in one pass (with batched decoding, cross-call batching keeps a GPU busy
        when calls are short).  Sequential decoding (``batch_size`` 0) goes window by window either way."""
        windows = [self._windows(r) for r in records]
        flat = [w for ws in windows for _ch, w in ws]
        decoded = iter(self._with_fallback(flat, self._transcribe(flat)))
        out = []
        for record, ws in zip(records, windows):
            drops: dict[str, int] = {}
            pieces = [(ch, p) for ch, w in ws for p in self._pieces(w, next(decoded), drops)]
            out.append(self._assemble(record, pieces, drops))
        return out

    # -- assembly -------------------------------------------------------------------------
    @staticmethod
    def _role(turn: Turn) -> str:
        """Stereo turns carry their role as speaker; diarized speakers get roles in the role stage."""
        return turn.speaker if turn.speaker in (ROLE_AGENT, ROLE_CUSTOMER) else ROLE_UNKNOWN

    def _low_confidence(self, pieces: list[_Piece]) -> bool:
        """Whisper is unsure of this turn: mean token log-prob or mean word probability under the
        ``asr.low_confidence_*`` thresholds."""
        return (float(np.mean([p.avg_logprob for p in pieces])) < self.cfg.low_confidence_logprob
                or float(np.mean([p.word.probability for p in pieces])) < self.cfg.low_confidence_word_prob)

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
        simplify = to_simplified if self.cfg.simplified else (lambda s: s)
        utterances: list[Utterance] = []
        for idx, turn in enumerate(turns):
            pieces = per_turn.get(idx)
            text = simplify("".join(p.word.word for p in pieces).strip()) if pieces else ""
            if not text:
                _count(drops, "empty_turn")
                continue
            words = tuple(Word(p.word.start, p.word.end, simplify(p.word.word), p.word.probability) for p in pieces)
            utterances.append(Utterance(
                turn_index=len(utterances), role=self._role(turn), channel=turn.channel,
                start=turn.start, end=turn.end, text=text, speaker=turn.speaker,
                avg_logprob=round(float(np.mean([p.avg_logprob for p in pieces])), 4),
                no_speech_prob=round(float(np.mean([p.no_speech_prob for p in pieces])), 4),
                words=words, low_confidence=self._low_confidence(pieces)))
        record = record.with_drops(drops).replace(utterances=tuple(utterances))
        if not utterances:
            return record.with_flag("no_transcript")
        if low_confidence_share(utterances) >= self.cfg.low_confidence_session_share:
            record = record.with_flag(FLAG_LOW_ASR_CONFIDENCE)
        return record

