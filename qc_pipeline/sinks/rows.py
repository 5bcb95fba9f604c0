"""Rows for the Parquet tables (``qc_pipeline.schema``), built from a finished :class:`CallRecord`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable

from qc_pipeline import __version__
from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, CallRecord, low_confidence_share


def session_row(rec: CallRecord, *, run_id: str, asr_model: str, asr_sha: str, config_hash: str) -> dict:
    src, info = rec.source, rec.audio_info
    speech = {ROLE_AGENT: 0.0, ROLE_CUSTOMER: 0.0}
    for u in rec.utterances:
        if u.role in speech and u.start is not None and u.end is not None:
            speech[u.role] += u.end - u.start
    is_audio = src.kind == "audio"
    return {
        "call_id": src.call_id, "kind": src.kind, "source_path": src.path, "agent_id": src.agent_id,
        "team": src.team, "queue": src.queue, "started_at": src.started_at,
        "status": rec.status, "error_reason": rec.error_reason, "error_detail": rec.error_detail,
        "duration_s": info.duration_s if info else None,
        "sample_rate": info.sample_rate if info else None,
        "channels": info.channels if info else None,
        "codec": info.codec if info else None,
        "channel_layout": src.channel_layout if is_audio else None,
        "agent_channel": rec.agent_channel,
        "n_speakers": len({u.speaker for u in rec.utterances}) if is_audio else None,
        "role_confidence": rec.role_confidence,
        "n_utterances": len(rec.utterances),
        "agent_speech_s": round(speech[ROLE_AGENT], 3) if is_audio else None,
        "customer_speech_s": round(speech[ROLE_CUSTOMER], 3) if is_audio else None,
        "asr_low_confidence_share": low_confidence_share(rec.utterances) if is_audio else None,
        "flags": list(rec.flags),
        "drops": dict(rec.drops),
        "stage_seconds": _summed(rec.timings),
        "asr_model": asr_model if is_audio else None,
        "asr_model_sha256": asr_sha if is_audio else None,
        "pipeline_version": __version__, "config_hash": config_hash, "run_id": run_id,
        "processed_at": dt.datetime.now(dt.timezone.utc),
    }


def _summed(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """A map has one value per key: a stage that ran twice for a call (split layout) counts once, summed."""
    out: dict[str, float] = {}
    for key, value in pairs:
        out[key] = round(out.get(key, 0.0) + value, 4)
    return out


def utterance_rows(rec: CallRecord, *, run_id: str) -> Iterable[dict]:
    for u in rec.utterances:
        yield {
            "call_id": rec.call_id, "turn_index": u.turn_index, "role": u.role, "speaker": u.speaker,
            "channel": u.channel, "start": u.start, "end": u.end, "text": u.text,
            "avg_logprob": u.avg_logprob, "no_speech_prob": u.no_speech_prob,
            "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability} for w in u.words],
            "emotion_index": u.emotion_index, "emotion": u.emotion, "low_confidence": u.low_confidence,
            "run_id": run_id,
        }


def score_rows(rec: CallRecord, *, run_id: str) -> tuple[list[dict], list[dict]]:
    """(scores rows, item_results rows) for a scored record; empty when it was not scored."""
    s = rec.score
    if s is None:
        return [], []
    score = [{
        "call_id": rec.call_id, "scorecard_id": s.scorecard_id, "scorecard_version": s.scorecard_version,
        "total": s.total, "grade": s.grade, "passed": s.passed, "veto": s.veto, "veto_items": list(s.veto_items),
        "flags": list(s.flags), "customer_emotion_index": rec.customer_emotion_index,
        "agent_attitude_index": rec.agent_attitude_index, "escalation": list(rec.escalation), "run_id": run_id,
    }]
    items = [{
        "call_id": rec.call_id, "scorecard_id": s.scorecard_id, "item_id": r.item_id, "item_name": r.name,
        "role": r.role, "mode": r.mode, "points": r.points, "max_points": r.max_points, "applicable": r.applicable,
        "hit": r.hit, "level": r.level, "violations": r.violations, "vetoed": r.vetoed,
        "evidence": [{"rule_id": h.rule_id, "rule_version": s.scorecard_version, "turn_index": h.turn_index,
                      "role": h.role, "start": h.start, "end": h.end, "text": h.text} for h in r.evidence],
        "uncertain": r.uncertain, "uncertain_turns": list(r.uncertain_turns),
        "run_id": run_id,
    } for r in s.items]
    return score, items


def summary_rows(rec: CallRecord, *, run_id: str) -> list[dict]:
    """The summaries row of a summarized record (stages/summarize.py); empty when it was not summarized."""
    if rec.summary is None:
        return []
    return [{"call_id": rec.call_id, **dataclasses.asdict(rec.summary), "run_id": run_id}]
