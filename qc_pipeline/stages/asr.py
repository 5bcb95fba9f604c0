"""ASR stage: faster-whisper per channel over packed speech spans, words mapped back to turns.

Each channel's speech spans (from the segment stage) are packed into windows of at most
``asr.window_s`` seconds of speech; each window is decoded once (one encoder pass instead
of one per turn), and word timestamps are mapped back to the original timeline.  Guards
drop subtitle-credit and silence hallucinations and collapse repeated-token loops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np

from qc_pipeline.audio import SAMPLE_RATE
from qc_pipeline.config import AsrConfig, VadConfig
from qc_pipeline.models import ResolvedModel, resolve_asr_model
from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, ROLE_UNKNOWN, CallRecord, SpeechSpan, Utterance, Word
from qc_pipeline.stages.base import Stage
from qc_pipeline.textnorm import collapse_loops, contains_credit, to_simplified
from qc_pipeline.turns import Turn, assign_to_turn, build_turns

log = logging.getLogger(__name__)


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """auto → cuda/float16 when CTranslate2 sees a GPU, else cpu/int8."""
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


class AsrStage(Stage):
    name = "asr"
    kinds = ("audio",)

    def __init__(self, cfg: AsrConfig, vad: VadConfig) -> None:
        self.cfg = cfg
        self.vad = vad
        self.model = None
        self.resolved: Optional[ResolvedModel] = None
        self.device = self.compute_type = ""

    def setup(self) -> None:
        from faster_whisper import WhisperModel

        self.resolved = resolve_asr_model(self.cfg.model)
        self.device, self.compute_type = pick_device(self.cfg.device, self.cfg.compute_type)
        log.info("loading %s from %s on %s/%s", self.resolved.name, self.resolved.path, self.device, self.compute_type)
        self.model = WhisperModel(str(self.resolved.path), device=self.device, compute_type=self.compute_type,
                                  cpu_threads=self.cfg.cpu_threads, local_files_only=True)

    # -- decoding -------------------------------------------------------------------------
    def _decode_window(self, channel_audio: np.ndarray, window: list[SpeechSpan], drops: dict) -> list[_Piece]:
        from faster_whisper.transcribe import restore_speech_timestamps

        chunks = [{"start": int(s.start * SAMPLE_RATE), "end": int(s.end * SAMPLE_RATE)} for s in window]
        clip = np.concatenate([channel_audio[c["start"]:c["end"]] for c in chunks])
        language = None if self.cfg.language == "auto" else self.cfg.language
        extra = {}
        if self.cfg.max_tokens_per_s > 0:
            extra["max_new_tokens"] = min(440, int(self.cfg.max_tokens_per_s * len(clip) / SAMPLE_RATE) + 20)
        segments, _info = self.model.transcribe(
            clip, language=language, beam_size=self.cfg.beam_size, hotwords=self.cfg.hotwords or None,
            condition_on_previous_text=False, word_timestamps=True, vad_filter=False,
            temperature=list(self.cfg.temperatures), repetition_penalty=self.cfg.repetition_penalty,
            no_repeat_ngram_size=self.cfg.no_repeat_ngram_size, **extra)
        pieces: list[_Piece] = []
        for seg in restore_speech_timestamps(segments, chunks, SAMPLE_RATE):
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

    def process(self, record: CallRecord) -> CallRecord:
        if self.model is None:
            self.setup()
        drops: dict[str, int] = {}
        # Without known speakers (mono, no diarizer) every speech span stays its own turn.
        known = all(s.speaker != ROLE_UNKNOWN for s in record.spans)
        turns = build_turns(record.spans, self.vad.turn_gap_s if known else 0.0)
        per_turn: dict[int, list[_Piece]] = {}
        for ch in range(record.audio.shape[0]):
            channel_spans = [s for s in record.spans if s.channel == ch]
            for window in pack_windows(channel_spans, self.cfg.window_s):
                for piece in self._decode_window(record.audio[ch], window, drops):
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
