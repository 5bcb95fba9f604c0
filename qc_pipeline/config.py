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
from typing import Any, Callable, Optional

import yaml

from qc_pipeline.errors import ConfigError


def _opt(default, *, choices=None, ge=None, le=None, check=None, doc=""):
    """A config key; ``check(value)`` returns a problem (str) or None for checks beyond choices/ranges."""
    return field(default=default, metadata={"choices": choices, "ge": ge, "le": le, "check": check, "doc": doc})


def _opt_list(default: tuple, doc="", item: type = str):
    return field(default_factory=lambda: tuple(default), metadata={"doc": doc, "item": item})


def _opt_map(default: dict, doc="", item: type = tuple, ge=None):
    """A mapping name -> list of strings (``item=tuple``) or name -> number (``item=float``); YAML order kept."""
    return field(default_factory=lambda: dict(default), metadata={"doc": doc, "item": item, "ge": ge})


ENGINES = ("local", "ray")  # run.engine / --engine


def _time_zone_problem(name: str) -> Optional[str]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai or UTC)"
    return None

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
    beam_size: int = _opt(3, ge=1, le=16,
                          doc="beam width; 3: dev CER 15.0 % / 18.6 % (16 / 8 kHz) vs 14.8 / 18.9 at 5 and 16.5 / 20.6 "
                              "at 1, for ~11 % more throughput on CPU than 5 (README, CPU throughput)")
    hotwords: Optional[str] = _opt(None, doc="words to bias decoding towards (whisper's prompt); a segment that "
                                             "only echoes them is dropped (prompt_echo). Off by default: the old "
                                             "'简体' leaked into transcripts; OpenCC makes the output simplified")
    simplified: bool = _opt(True, doc="convert output to simplified Chinese with OpenCC (tw2sp)")
    window_s: float = _opt(28.0, ge=5.0, le=30.0, doc="speech spans are packed into windows this long")
    batch_size: int = _opt(-1, ge=-1, le=256,
                           doc="windows decoded together (BatchedInferencePipeline); -1 = auto: 16 on GPU, 4 "
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


DIARIZATION_BACKENDS = ("none", "embedded", "campp", "senko", "pyannote")  # qc_pipeline.diarize registers each


@dataclass(frozen=True)
class DiarizationConfig:
    backend: str = _opt("campp", choices=DIARIZATION_BACKENDS,
                        doc="mono calls: campp (VAD + CAM++ embeddings + clustering, the default), embedded "
                            "(VAD + resemblyzer + k-means), senko (the senko package as it is), pyannote (local "
                            "pipeline folder), or none (one speaker, role 'unknown', flag mono_no_diarizer)")
    max_speakers: int = _opt(4, ge=1, le=8, doc="upper bound; campp, senko and pyannote find the count from the "
                                                "audio, embedded starts from it")
    window_s: float = _opt(1.5, ge=0.5, le=5.0, doc="campp, embedded: embedding window")
    hop_s: float = _opt(0.75, ge=0.1, le=5.0, doc="campp, embedded: window hop")
    min_segment_s: float = _opt(0.5, ge=0.0, le=5.0, doc="speaker runs shorter than this merge into a neighbour")
    cluster_threshold: float = _opt(0.6, ge=0.0, le=1.0,
                                    doc="campp: window groups less similar than this stay apart in the first "
                                        "clustering pass (may leave a voice in pieces; the next keys join them)")
    same_speaker_ratio: float = _opt(0.8, ge=0.0, le=1.0,
                                     doc="campp: two groups whose similarity, relative to their own inner "
                                         "similarity, is at least this are one speaker")
    min_speaker_s: float = _opt(3.0, ge=0.0, doc="campp: a group with less speech is not a speaker of its own")
    single_speaker_similarity: float = _opt(0.90, ge=0.0, le=1.0,
                                            doc="embedded: clusters whose centroids are more similar are one speaker")
    threads: int = _opt(1, ge=1, le=64, doc="campp, senko: CPU threads per worker")
    cache_dir: str = _opt("", doc="where campp's ONNX export (built once per machine) and senko's compiled code "
                                  "live; '' = $QC_PIPELINE_CACHE_DIR, else ~/.cache/qc-pipeline")
    pyannote_pipeline: str = _opt("models/pyannote-speaker-diarization",
                                  doc="pyannote: local pipeline folder with config.yaml (no hub access)")
    role_min_confidence: float = _opt(0.75, ge=0.5, le=1.0,
                                      doc="agent/customer decisions below this are flagged low_role_confidence")


@dataclass(frozen=True)
class ScoringConfig:
    enabled: bool = _opt(True, doc="score every session against the scorecard")
    scorecard: str = _opt("configs/scorecards/default.yaml",
                          doc="scorecard YAML (relative paths: current folder, then the installed qc_pipeline "
                              "package, which ships configs/scorecards/default.yaml)")
    sentiment: bool = _opt(True, doc="utterance/session emotion with the model in models/sentiment")
    sentiment_backend: str = _opt("sklearn", choices=("sklearn", "onnx"),
                                  doc="sklearn = models/sentiment (default); onnx = fine-tuned m3e-small built by "
                                      "scripts/finetune_sentiment_onnx.py (NON-COMMERCIAL licence, opt-in only)")
    sentiment_onnx_path: str = _opt("models/sentiment-onnx", doc="folder with model.onnx, tokenizer and card.json")
    emotion_flag_below: float = _opt(60.0, ge=0.0, le=100.0, doc="customer emotion index under this flags the call")
    mask_pii: bool = _opt(True, doc="mask phone/ID/bank numbers in everything written: transcripts, evidence, "
                                    "error details (after scoring; rules see the unmasked text)")


@dataclass(frozen=True)
class OutputConfig:
    flush_every: int = _opt(500, ge=1, doc="calls per Parquet part at most (with flush_interval_s, whichever "
                                          "comes first); a crash redoes at most this many")
    flush_interval_s: float = _opt(300.0, ge=0.0, doc="commit a part at least this often while calls finish, so a "
                                                      "crash on a slow night redoes little (0 = every call)")
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
                                     "(0 = no limit)")
    engine: str = _opt("local", choices=ENGINES, doc="local worker processes, or Ray (`ray` extra)")
    ray_address: Optional[str] = _opt(None, doc="Ray cluster address (else $RAY_ADDRESS, else a local Ray)")
    ray_actors_per_gpu: int = _opt(1, ge=1, le=16,
                                   doc="Ray ASR actors sharing one GPU (num_gpus 1/N each). One actor per GPU left "
                                       "an H200 mostly idle, where 4 local workers on it ran 2.6x faster "
                                       "(docs/gpu.md); not yet measured under Ray, so 1 stays the default")
    input_timezone: str = _opt("Asia/Shanghai", check=_time_zone_problem,
                               doc="time zone of manifest / chat started_at values written without an offset")


@dataclass(frozen=True)
class LlmConfig:
    """An OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama, Xinference, a hosted Qwen).
    No base_url = no LLM: `llm` rule items fall back to their rule levels, summaries use keywords."""

    base_url: Optional[str] = _opt(None, doc="e.g. http://gpu-host:8000/v1 (vLLM); null = no LLM, all offline")
    model: str = _opt("", doc="model name the server knows (e.g. Qwen2.5-7B-Instruct)")
    api_key_env: Optional[str] = _opt(None, doc="NAME of the environment variable holding the API key (the key "
                                                "itself is never put in config, logs or output)")
    timeout_s: float = _opt(60.0, ge=1.0, le=3600.0, doc="one HTTP request")
    max_retries: int = _opt(2, ge=0, le=10, doc="retries after a timeout, connection error, 429 or 5xx")
    backoff_s: float = _opt(1.0, ge=0.0, le=60.0, doc="first retry waits this long, then doubles")
    max_concurrency: int = _opt(2, ge=1, le=256, doc="requests in flight at once, per worker process")
    max_calls_per_session: int = _opt(12, ge=1, le=1000,
                                      doc="LLM requests one session may use (cache hits count too, so a re-run "
                                          "gives the same answers); past it, items fall back to their rules")
    max_prompt_chars: int = _opt(6000, ge=500, le=500000,
                                 doc="transcript characters per request; longer sessions are sent in chunks of "
                                     "whole turns (never cut silently)")
    max_tokens: int = _opt(300, ge=16, le=8192, doc="answer length limit")
    temperature: float = _opt(0.0, ge=0.0, le=2.0)
    json_mode: bool = _opt(True, doc="ask for response_format json_object (vLLM, llama.cpp, Ollama support it)")
    cache_dir: str = _opt("~/.cache/qc-pipeline/llm",
                          doc="answers cached by (model, prompt hash): re-runs cost nothing; '' = no cache")


@dataclass(frozen=True)
class SummaryConfig:
    """Per-session summary, call type and call reason (summaries table); duration targets by call type."""

    enabled: bool = _opt(True, doc="write the summaries table (keywords only when no LLM is configured)")
    use_llm: bool = _opt(True, doc="ask the LLM (when llm.base_url is set) for summary, type, reason, resolved")
    call_types: dict = _opt_map(
        {"投诉": ["投诉", "12315", "不满意", "太差", "差评", "骗人", "骗子", "坑人", "什么破", "凭什么", "消协",
                "曝光", "太慢了", "没人管", "不负责任", "举报"],
         "建议": ["建议", "希望你们", "提个意见", "提意见", "改进", "应该增加", "能不能增加", "反馈个意见"],
         "办理": ["办理", "开通", "取消", "退订", "注销", "申请", "修改", "更改", "变更", "补发", "退款", "退货", "换货",
                "改地址", "开发票", "开票", "充值", "挂失", "激活"],
         "咨询": []},
        doc="call type -> customer keywords, first match wins (the manual's 咨询/投诉/建议/办理); a type with "
            "no keywords is the default")
    reasons: dict = _opt_map(
        {"物流配送": ["快递", "物流", "发货", "配送", "送到", "到货", "签收", "派送", "运单", "没收到"],
         "退换货退款": ["退款", "退货", "换货", "退钱", "售后", "退回", "返修", "维修"],
         "订单修改取消": ["取消订单", "改地址", "修改地址", "修改订单", "地址", "取消"],
         "发票": ["发票", "开票", "抬头", "税号"],
         "价格优惠": ["价格", "优惠", "优惠券", "降价", "保价", "差价", "便宜", "活动", "满减"],
         "商品质量": ["质量", "坏了", "故障", "破损", "不能用", "用不了", "有问题", "瑕疵", "漏"],
         "账户支付": ["账户", "账号", "支付", "付款", "余额", "密码", "登录", "话费", "账单", "扣费", "扣钱"],
         "套餐业务": ["套餐", "流量", "宽带", "业务", "号码", "信号"],
         "其他": []},
        doc="call-reason taxonomy: reason -> customer keywords (most keyword hits wins); a reason with no "
            "keywords is the default. The LLM picks from these names and adds free text")
    duration_targets_min: dict = _opt_map({"咨询": 5.0, "投诉": 8.0}, item=float, ge=0.0,
                                          doc="operations manual: longest handling time per call type, minutes; "
                                              "longer calls get the session flag over_duration_target")


@dataclass(frozen=True)
class PipelineConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    diarization: DiarizationConfig = field(default_factory=DiarizationConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    run: RunConfig = field(default_factory=RunConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Short hash of the effective config, written to every session row."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, default=list)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------- validation

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# type -> (is the YAML value acceptable, what was expected, convert): one line per config value type
_TYPES: dict[Any, tuple[Callable[[Any], bool], str, Callable[[Any], Any]]] = {
    bool: (lambda v: isinstance(v, bool), "true/false", lambda v: v),
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", lambda v: v),
    float: (_is_number, "a number", float),
    str: (lambda v: isinstance(v, str), "a string", lambda v: v),
    (tuple, str): (lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
                   "a list of strings", tuple),
    (tuple, float): (lambda v: isinstance(v, (list, tuple)) and bool(v) and all(_is_number(x) for x in v),
                     "a non-empty list of numbers", lambda v: tuple(float(x) for x in v)),
}


def _check_value(key: str, value: Any, f: dataclasses.Field, hint: Any, source: Optional[str]) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is dict:
        value = _check_map(key, value, f.metadata.get("item"), source)
    else:
        accepts, expected, convert = _TYPES[(tuple, f.metadata.get("item", str)) if hint is tuple else hint]
        if not accepts(value):
            raise ConfigError(key, f"expected {expected}, got {value!r}", source)
        value = convert(value)
    meta = f.metadata
    if isinstance(value, dict):
        for name, v in value.items():
            if meta.get("ge") is not None and v < meta["ge"]:
                raise ConfigError(f"{key}.{name}", f"must be >= {meta['ge']}; got {v!r}", source)
        return value
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(key, f"must be one of {', '.join(map(str, meta['choices']))}; got {value!r}", source)
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ConfigError(key, f"must be >= {meta['ge']}; got {value!r}", source)
    if meta.get("le") is not None and value > meta["le"]:
        raise ConfigError(key, f"must be <= {meta['le']}; got {value!r}", source)
    problem = meta["check"](value) if meta.get("check") else None
    if problem:
        raise ConfigError(key, problem, source)
    return value


def _check_map(key: str, value: Any, item: type, source: Optional[str]) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a mapping, got {value!r}", source)
    out = {}
    for name, v in value.items():
        k = f"{key}.{name}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(k, "names must be non-empty strings", source)
        if item is float:
            accepts, expected, convert = _TYPES[float]
            if not accepts(v):
                raise ConfigError(k, f"expected {expected}, got {v!r}", source)
            out[name] = convert(v)
        else:
            v = [] if v is None else v
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in v):
                raise ConfigError(k, f"expected a list of non-empty strings, got {v!r}", source)
            out[name] = list(v)
    return out


def _check_sections(cfg: "PipelineConfig", source: Optional[str]) -> list[ConfigError]:
    """Checks that span several keys of a section (every problem, not only the first)."""
    errors: list[ConfigError] = []

    def bad(key: str, message: str) -> None:
        errors.append(ConfigError(key, message, source))

    llm = cfg.llm
    if llm.base_url is not None:
        if not llm.base_url.startswith(("http://", "https://")):
            bad("llm.base_url", f"must start with http:// or https://; got {llm.base_url!r}")
        if not llm.model.strip():
            bad("llm.model", "is required when llm.base_url is set")
    if llm.api_key_env is not None and not llm.api_key_env.replace("_", "").isalnum():
        bad("llm.api_key_env", "must be the NAME of an environment variable (e.g. QWEN_API_KEY), not the key itself")
    for sec in ("call_types", "reasons"):
        if not getattr(cfg.summary, sec):
            bad(f"summary.{sec}", "needs at least one entry")
    for name in cfg.summary.duration_targets_min:
        if name not in cfg.summary.call_types:
            bad(f"summary.duration_targets_min.{name}",
                f"unknown call type (summary.call_types: {', '.join(cfg.summary.call_types)})")
    return errors


def _build(cls: type, data: Any, prefix: str, source: Optional[str], errors: list[ConfigError]):
    """``cls`` from ``data``; every problem is appended to ``errors`` (bad keys keep their default)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(ConfigError(prefix or "<root>", f"expected a mapping, got {type(data).__name__}", source))
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(fields)})"
            errors.append(ConfigError(key, f"unknown key{hint}", source))
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key, source, errors)
            continue
        try:
            kwargs[name] = _check_value(key, value, fields[name], hint, source)
        except ConfigError as exc:
            errors.append(exc)
    return cls(**kwargs)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(item, "override must look like section.key=value", "--set")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    return key.strip().split("."), value


def load_config(path: Optional[str | Path] = None, overrides: tuple[str, ...] = ()) -> PipelineConfig:
    """Load and validate a YAML config; ``overrides`` are ``section.key=value`` strings.
    Every problem is reported at once (one :class:`ConfigError` listing them all)."""
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
    errors: list[ConfigError] = []
    for item in overrides:
        try:
            keys, value = _parse_override(item)
        except ConfigError as exc:
            errors.append(exc)
            continue
        node = data if isinstance(data, dict) else {}
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                errors.append(ConfigError(".".join(keys), "cannot override inside a non-mapping", "--set"))
                break
        else:
            node[keys[-1]] = value
    cfg = _build(PipelineConfig, data, "", source, errors)
    if not errors:
        errors.extend(_check_sections(cfg, source))
    if errors:
        raise ConfigError.combine(errors)
    return cfg


def dump_default_yaml() -> str:
    return yaml.safe_dump(json.loads(json.dumps(PipelineConfig().to_dict(), default=list)),
                          allow_unicode=True, sort_keys=False)
