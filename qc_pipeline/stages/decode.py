"""Decode stage: file → per-channel 16 kHz audio + which channel is the agent."""

from __future__ import annotations

from qc_pipeline.audio import load_audio
from qc_pipeline.config import AudioConfig
from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import CallRecord
from qc_pipeline.stages.base import Stage


class DecodeStage(Stage):
    name = "decode"
    kinds = ("audio",)

    def __init__(self, cfg: AudioConfig) -> None:
        self.cfg = cfg

    def process(self, record: CallRecord) -> CallRecord:
        src = record.source
        if not src.path:
            raise CallError(Reason.BAD_MANIFEST_ROW, "audio call without a path")
        audio, info = load_audio(src.path, max_channels=self.cfg.max_channels,
                                 max_duration_s=self.cfg.max_duration_s, min_duration_s=self.cfg.min_duration_s)
        layout = src.channel_layout
        if info.channels == 1:
            agent_channel = None
            if layout in ("agent_left", "agent_right"):
                record = record.with_flag("layout_says_stereo_but_mono")
        else:
            if layout == "mono":
                record = record.with_flag("layout_says_mono_but_stereo")
            side = {"agent_left": "left", "agent_right": "right"}.get(layout, self.cfg.agent_channel)
            agent_channel = 0 if side == "left" else 1
        if info.truncated:
            record = record.with_flag("truncated_audio")
        return record.replace(audio=audio, audio_info=info, agent_channel=agent_channel)
