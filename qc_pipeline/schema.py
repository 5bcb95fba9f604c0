"""Explicit, versioned Parquet schemas.  Never inferred.

Bump ``SCHEMA_VERSION`` on any change; readers check the ``qc_pipeline.schema_version``
key in the file metadata.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"  # 2: sessions drops / stage_seconds are maps, started_at a timestamp,
# asr_low_confidence_share; utterances low_confidence; item_results uncertain, uncertain_turns


def _schema(name: str, fields: list[pa.Field], version: str = SCHEMA_VERSION) -> pa.Schema:
    return pa.schema(fields, metadata={"qc_pipeline.table": name, "qc_pipeline.schema_version": version})


COUNTS = pa.map_(pa.string(), pa.int64())      # DuckDB: drops['short_span']; pandas: list of (key, value)
SECONDS = pa.map_(pa.string(), pa.float64())

SESSIONS = _schema("sessions", [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),            # audio | chat
    pa.field("source_path", pa.string()),
    pa.field("agent_id", pa.string()),
    pa.field("team", pa.string()),
    pa.field("queue", pa.string()),
    pa.field("started_at", pa.timestamp("ms", tz="UTC")),     # manifest / chat started_at (naive: run.input_timezone)
    pa.field("status", pa.string(), nullable=False),          # ok | failed
    pa.field("error_reason", pa.string()),                     # errors.Reason code when failed
    pa.field("error_detail", pa.string()),
    pa.field("duration_s", pa.float64()),
    pa.field("sample_rate", pa.int32()),
    pa.field("channels", pa.int32()),
    pa.field("codec", pa.string()),
    pa.field("channel_layout", pa.string()),                   # as requested: auto | mono | agent_left | agent_right
    pa.field("agent_channel", pa.int32()),                     # resolved; null for mono
    pa.field("n_speakers", pa.int32()),
    pa.field("role_confidence", pa.float64()),                 # 0.5 coin flip .. 1.0 certain (content-based)
    pa.field("n_utterances", pa.int32()),
    pa.field("agent_speech_s", pa.float64()),
    pa.field("customer_speech_s", pa.float64()),
    pa.field("flags", pa.list_(pa.string())),
    pa.field("drops", COUNTS),                                 # things dropped on purpose, by reason
    pa.field("stage_seconds", SECONDS),
    pa.field("asr_model", pa.string()),
    pa.field("asr_model_sha256", pa.string()),
    pa.field("asr_low_confidence_share", pa.float64()),         # share of speech time in low-confidence utterances
    pa.field("pipeline_version", pa.string(), nullable=False),
    pa.field("config_hash", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("processed_at", pa.timestamp("ms", tz="UTC"), nullable=False),
])

WORD = pa.struct([("start", pa.float32()), ("end", pa.float32()), ("word", pa.string()), ("probability", pa.float32())])

UTTERANCES = _schema("utterances", [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("turn_index", pa.int32(), nullable=False),
    pa.field("role", pa.string(), nullable=False),            # agent | customer | unknown
    pa.field("speaker", pa.string()),
    pa.field("channel", pa.int32(), nullable=False),          # -1 for chat
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
    pa.field("text", pa.string(), nullable=False),
    pa.field("avg_logprob", pa.float32()),
    pa.field("no_speech_prob", pa.float32()),
    pa.field("words", pa.list_(WORD)),
    pa.field("low_confidence", pa.bool_()),                    # ASR unsure of this turn (asr.low_confidence_*)
    pa.field("emotion_index", pa.float32()),                  # 0..100, 100 = calm/positive
    pa.field("emotion", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
])

SCORES = _schema("scores", [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("scorecard_id", pa.string(), nullable=False),
    pa.field("scorecard_version", pa.string(), nullable=False),
    pa.field("total", pa.float64(), nullable=False),          # 0..100 over applicable items; 0 on veto
    pa.field("grade", pa.string(), nullable=False),
    pa.field("passed", pa.bool_(), nullable=False),
    pa.field("veto", pa.bool_(), nullable=False),
    pa.field("veto_items", pa.list_(pa.string())),
    pa.field("flags", pa.list_(pa.string())),                 # low_score, veto, compliance_hit, customer_emotion_low, ...
    pa.field("customer_emotion_index", pa.float64()),
    pa.field("agent_attitude_index", pa.float64()),
    pa.field("escalation", pa.list_(pa.string())),
    pa.field("run_id", pa.string(), nullable=False),
])

EVIDENCE = pa.struct([("rule_id", pa.string()), ("rule_version", pa.string()), ("turn_index", pa.int32()),
                      ("role", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])

ITEM_RESULTS = _schema("item_results", [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("scorecard_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("item_name", pa.string()),
    pa.field("role", pa.string()),
    pa.field("mode", pa.string()),                             # binary | graded | deduction
    pa.field("points", pa.float64(), nullable=False),
    pa.field("max_points", pa.float64(), nullable=False),
    pa.field("applicable", pa.bool_(), nullable=False),
    pa.field("hit", pa.bool_(), nullable=False),               # passed (binary/graded) or violated (deduction)
    pa.field("level", pa.int32()),
    pa.field("violations", pa.int32()),
    pa.field("vetoed", pa.bool_()),
    pa.field("evidence", pa.list_(EVIDENCE)),
    pa.field("uncertain", pa.bool_(), nullable=False),         # decided on low-confidence ASR text (review it)
    pa.field("uncertain_turns", pa.list_(pa.int32())),         # the low-confidence utterances it rests on
    pa.field("run_id", pa.string(), nullable=False),
])

# one row per summarized session (stages/summarize.py); versioned on its own
SUMMARIES_VERSION = "1"
SUMMARIES = _schema("summaries", [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("call_type", pa.string(), nullable=False),       # a summary.call_types name (咨询/投诉/建议/办理)
    pa.field("call_type_source", pa.string(), nullable=False),  # llm | keywords
    pa.field("reason", pa.string(), nullable=False),          # a summary.reasons name
    pa.field("reason_text", pa.string()),                     # free text (LLM) or the customer turn that matched
    pa.field("reason_source", pa.string(), nullable=False),   # llm | keywords
    pa.field("problem", pa.string()),                         # LLM summary: the customer's problem
    pa.field("action", pa.string()),                          # what the agent did
    pa.field("outcome", pa.string()),
    pa.field("resolved", pa.bool_()),                         # null without an LLM answer
    pa.field("duration_s", pa.float64()),
    pa.field("duration_target_s", pa.float64()),              # summary.duration_targets_min of the call type
    pa.field("over_duration_target", pa.bool_()),
    pa.field("llm_model", pa.string()),
    pa.field("llm_requests", pa.int32()),
    pa.field("llm_error", pa.string()),                       # qc_pipeline.llm.client error code
    pa.field("run_id", pa.string(), nullable=False),
], version=SUMMARIES_VERSION)

TABLES = {"sessions": SESSIONS, "utterances": UTTERANCES, "scores": SCORES, "item_results": ITEM_RESULTS,
          "summaries": SUMMARIES}
