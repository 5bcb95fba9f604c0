"""Validated YAML configuration.

Every section is a frozen dataclass; :func:`load_config` walks the YAML against the
dataclass fields and raises :class:`ConfigError` naming the dotted key on any unknown
key, wrong type or out-of-range value (with a "did you mean" hint for typos).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from qc_pipeline.errors import ConfigError


def _opt(default, *, choices=None, ge=None, le=None, doc=""):
    return field(default=default, metadata={"choices": choices, "ge": ge, "le": le, "doc": doc})


def _opt_list(default: tuple, doc="", item: type = str):
    return field(default_factory=lambda: tuple(default), metadata={"doc": doc, "item": item})


ENGINES = ("local", "ray")  # run.engine / --engine

@dataclass(frozen=True)
class AudioConfig:
    agent_channel: str = _opt("left", choices=("left", "right"),
                              doc="stereo files: which channel is the agent (manifest channel_layout overrides)")
    max_channels: int = _opt(2, ge=1, le=2, doc="files with more channels are rejected (unsupported_channels)")
    max_duration_s: float = _opt(4 * 3600.0, ge=1.0, doc="longer calls are rejected (too_long)")
    min_duration_s: float = _opt(0.3, ge=0.0, doc="shorter calls are rejected (too_short)")


@dataclass(frozen=True)
class VadConfig:
    threshold: float = _opt(0.5, ge=0.0, le=1.0)
    min_silence_ms: int = _opt(300, ge=0, doc="silence that ends a speech span")
    speech_pad_ms: int = _opt(100, ge=0)
    min_span_s: float = _opt(0.25, ge=0.0, doc="speech spans shorter than this are dropped before ASR")
    max_span_s: float = _opt(20.0, ge=1.0, le=30.0, doc="long spans are split (at silences when possible)")
    turn_gap_s: float = _opt(1.5, ge=0.0, doc="same-speaker spans closer than this form one turn")


@dataclass(frozen=True)
class AsrConfig:
    backend: str = _opt("faster-whisper", doc="ASR backend by name (qc_pipeline/asr/registry.py)")
    model: str = _opt("whisper-base", doc="a Whisper size installed with `qc-pipeline models install NAME` "
                                          "(large-v3, ...), a folder name under models/, or a path to a "
                                          "CTranslate2 Whisper folder")
    device: str = _opt("auto", choices=("auto", "cpu", "cuda"))
    compute_type: str = _opt("auto", doc="auto = float16 on cuda, int8 on cpu; any CTranslate2 compute type")
    cpu_threads: int = _opt(1, ge=0, doc="per worker; two 1-thread workers beat one 2-thread worker")
    language: str = _opt("zh", doc="ISO code, or 'auto' to detect per channel")
    beam_size: int = _opt(5, ge=1, le=16)
    hotwords: Optional[str] = _opt(None, doc="words to bias decoding towards (whisper's prompt); a segment that "
                                             "only echoes them is dropped (prompt_echo). Off by default: the old "
                                             "'简体' leaked into transcripts; OpenCC makes the output simplified")
    simplified: bool = _opt(True, doc="convert output to simplified Chinese with OpenCC (tw2sp)")
    window_s: float = _opt(28.0, ge=5.0, le=30.0, doc="speech spans are packed into windows this long")
    batch_size: int = _opt(-1, ge=-1, le=256,
                           doc="windows decoded together (BatchedInferencePipeline); -1 = auto: 16 on GPU, 8 "
                               "on CPU; 0 = sequential, with temperature fallback")
    max_no_speech_prob: float = _opt(0.6, ge=0.0, le=1.0,
                                     doc="a segment above this AND below min_avg_logprob is dropped")
    min_avg_logprob: float = _opt(-1.0, le=0.0)
    max_repeats: int = _opt(4, ge=2, doc="a 1-4 character unit repeated more times is a decoding loop")
    fallback_logprob: float = _opt(-1.0, le=0.0, doc="sequential decoding: a window whose mean token log-prob "
                                                     "is below this is decoded again at the next temperature")
    fallback_compression_ratio: float = _opt(2.4, ge=1.0, doc="sequential decoding: a window whose text "
                                                              "compresses better than this (a loop) is decoded "
                                                              "again at the next temperature")
    low_confidence_logprob: float = _opt(-0.6, le=0.0, doc="an utterance whose mean token log-prob is below "
                                                           "this is marked low_confidence")
    low_confidence_word_prob: float = _opt(0.65, ge=0.0, le=1.0, doc="... or whose mean word probability is "
                                                                    "below this")
    low_confidence_session_share: float = _opt(0.3, ge=0.0, le=1.0,
                                               doc="a session with at least this share of its speech time in "
                                                   "low-confidence utterances is flagged low_asr_confidence")
    temperatures: tuple = _opt_list((0.0, 0.4), item=float,
                                    doc="fallback temperatures (whisper retries a window at the next one when "
                                        "it fails the compression/log-prob checks)")
    max_tokens_per_s: float = _opt(12.0, ge=0.0, doc="cap tokens per window at this x speech seconds + 20 "
                                                     "(stops runaway loops early; 0 = whisper's 448)")
    repetition_penalty: float = _opt(1.0, ge=1.0, le=2.0)
    no_repeat_ngram_size: int = _opt(0, ge=0, le=16,
                                     doc="forbid repeating any n-gram of tokens inside one window: stops decoding "
                                         "loops before they burn max tokens (0 = off)")
    credit_phrases: tuple = _opt_list(
        ("字幕由", "字幕提供", "字幕志愿者", "中文字幕", "请不吝点赞", "点赞订阅", "订阅转发",
         "打赏支持", "明镜与点点", "感谢观看", "谢谢观看", "谢谢收看", "Amara.org", "优优独播剧场",
         "YoYo Television"),
        doc="subtitle-credit phrases whisper invents on silence; segments containing them are dropped")


@dataclass(frozen=True)
class DiarizationConfig:
    backend: str = _opt("embedded", choices=("none", "embedded", "pyannote"),
                        doc="mono calls: embedded (VAD + resemblyzer + clustering), pyannote (local pipeline "
                            "folder), or none (one speaker, role 'unknown', flag mono_no_diarizer)")
    max_speakers: int = _opt(2, ge=1, le=8)
    window_s: float = _opt(1.5, ge=0.5, le=5.0, doc="embedded: embedding window")
    hop_s: float = _opt(0.5, ge=0.1, le=5.0, doc="embedded: window hop")
    min_segment_s: float = _opt(0.5, ge=0.0, le=5.0, doc="speaker runs shorter than this merge into a neighbour")
    single_speaker_similarity: float = _opt(0.90, ge=0.0, le=1.0,
                                            doc="embedded: clusters whose centroids are more similar are one speaker")
    pyannote_pipeline: str = _opt("models/pyannote-speaker-diarization",
                                  doc="pyannote: local pipeline folder with config.yaml (no hub access)")
    role_min_confidence: float = _opt(0.75, ge=0.5, le=1.0,
                                      doc="agent/customer decisions below this are flagged low_role_confidence")


@dataclass(frozen=True)
class ScoringConfig:
    enabled: bool = _opt(True, doc="score every session against the scorecard")
    scorecard: str = _opt("configs/scorecards/default.yaml",
                          doc="scorecard YAML (relative paths: current folder, then the qc-pipeline checkout)")
    sentiment: bool = _opt(True, doc="utterance/session emotion with the model in models/sentiment")
    sentiment_backend: str = _opt("sklearn", choices=("sklearn", "onnx"),
                                  doc="sklearn = models/sentiment (default); onnx = fine-tuned m3e-small built by "
                                      "scripts/finetune_sentiment_onnx.py (NON-COMMERCIAL licence, opt-in only)")
    sentiment_onnx_path: str = _opt("models/sentiment-onnx", doc="folder with model.onnx, tokenizer and card.json")
    emotion_flag_below: float = _opt(60.0, ge=0.0, le=100.0, doc="customer emotion index under this flags the call")
    mask_pii: bool = _opt(True, doc="mask phone/ID/bank numbers in the written transcripts (after scoring)")


@dataclass(frozen=True)
class OutputConfig:
    flush_every: int = _opt(8, ge=1, doc="calls per Parquet part; a crash redoes at most this many")
    compression: str = _opt("zstd", choices=("zstd", "snappy", "gzip", "none"))


@dataclass(frozen=True)
class RunConfig:
    workers: int = _opt(1, ge=0, doc="worker processes; 0 = one per core")
    progress: bool = _opt(True)
    calls_per_task: int = _opt(0, ge=0, le=64,
                               doc="calls a worker takes at once; with batched ASR their windows share batches "
                                   "(keeps a GPU busy on short calls). 0 = auto: 8 on GPU, 1 on CPU")
    call_timeout_s: float = _opt(1800.0, ge=0.0,
                                 doc="a call still running after this is killed and written as call_timeout "
                                     "(0 = no limit; multi-worker runs only)")
    engine: str = _opt("local", choices=ENGINES, doc="local worker processes, or Ray (`ray` extra)")
    ray_address: Optional[str] = _opt(None, doc="Ray cluster address (else $RAY_ADDRESS, else a local Ray)")


@dataclass(frozen=True)
class PipelineConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    diarization: DiarizationConfig = field(default_factory=DiarizationConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Short hash of the effective config, written to every session row."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, default=list)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------- validation

def _check_value(key: str, value: Any, f: dataclasses.Field, hint: Any, source: Optional[str]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true/false, got {value!r}", source)
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}", source)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}", source)
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}", source)
    elif hint is tuple:
        if f.metadata.get("item") is float:
            ok = isinstance(value, (list, tuple)) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            if not ok:
                raise ConfigError(key, f"expected a non-empty list of numbers, got {value!r}", source)
            value = tuple(float(v) for v in value)
        else:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(key, f"expected a list of strings, got {value!r}", source)
            value = tuple(value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(key, f"must be one of {', '.join(map(str, meta['choices']))}; got {value!r}", source)
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ConfigError(key, f"must be >= {meta['ge']}; got {value!r}", source)
    if meta.get("le") is not None and value > meta["le"]:
        raise ConfigError(key, f"must be <= {meta['le']}; got {value!r}", source)
    return value


def _build(cls: type, data: Any, prefix: str, source: Optional[str]):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {type(data).__name__}", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        key = f"{prefix}.{k}" if prefix else str(k)
        close = difflib.get_close_matches(str(k), fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(fields)})"
        raise ConfigError(key, f"unknown key{hint}", source)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key, source)
        else:
            kwargs[name] = _check_value(key, value, fields[name], hint, source)
    return cls(**kwargs)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(item, "override must look like section.key=value", "--set")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    return key.strip().split("."), value


def load_config(path: Optional[str | Path] = None, overrides: tuple[str, ...] = ()) -> PipelineConfig:
    """Load and validate a YAML config; ``overrides`` are ``section.key=value`` strings."""
    data: dict = {}
    source = None
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("<file>", f"cannot read config: {exc}", source) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError("<file>", f"invalid YAML: {exc}", source) from None
    data = json.loads(json.dumps(data, default=list))  # deep copy; never mutate the caller's data
    for item in overrides:
        keys, value = _parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(keys), "cannot override inside a non-mapping", "--set")
        node[keys[-1]] = value
    return _build(PipelineConfig, data, "", source)


def dump_default_yaml() -> str:
    return yaml.safe_dump(json.loads(json.dumps(PipelineConfig().to_dict(), default=list)),
                          allow_unicode=True, sort_keys=False)
