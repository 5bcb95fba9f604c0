"""Role stage: assign agent/customer to diarized speakers (mono) or check the channel map (stereo)."""

from __future__ import annotations

import dataclasses
import logging

from qc_pipeline.config import DiarizationConfig
from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, ROLE_UNKNOWN, CallRecord
from qc_pipeline.roles import decide_agent
from qc_pipeline.stages.base import Stage

log = logging.getLogger(__name__)


class RoleStage(Stage):
    name = "roles"
    kinds = ("audio",)

    def __init__(self, cfg: DiarizationConfig) -> None:
        self.cfg = cfg

    def process(self, record: CallRecord) -> CallRecord:
        utts = record.utterances
        if not utts:
            return record
        decision = decide_agent(utts)
        if record.agent_channel is not None:  # stereo: roles come from the channel map; check it
            if decision is not None and decision.agent_speaker == ROLE_CUSTOMER and decision.confidence >= self.cfg.role_min_confidence:
                log.warning("call %s: the 'agent' channel talks like a customer (confidence %.2f); "
                            "check channel_layout / audio.agent_channel", record.call_id, decision.confidence)
                record = record.with_flag("channel_map_suspect")
            return record.replace(role_confidence=decision.confidence if decision else None)
        if decision is None or (ROLE_UNKNOWN in {u.speaker for u in utts}):
            return record  # no diarizer ran: roles stay unknown (flag mono_no_diarizer)
        single = len({u.speaker for u in utts}) < 2
        if single:  # one voice: agent if it talks like one, else customer; never confident
            agent_speaker = decision.agent_speaker if decision.scores[0][1] > 0 else None
            record = record.with_flag("single_speaker")
        else:
            agent_speaker = decision.agent_speaker
        new = [dataclasses.replace(u, role=ROLE_AGENT if u.speaker == agent_speaker else ROLE_CUSTOMER) for u in utts]
        record = record.replace(utterances=tuple(new), role_confidence=decision.confidence)
        return record.with_flag("low_role_confidence") if decision.confidence < self.cfg.role_min_confidence else record
