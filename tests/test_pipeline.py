"""End to end on real audio with the real embedded model (no mocks on the happy path)."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from qc_pipeline.audio import load_audio
from qc_pipeline.config import load_config
from qc_pipeline.metrics import cer
from qc_pipeline.runner import run_batch
from qc_pipeline.schema import SCHEMA_VERSION, SESSIONS, UTTERANCES
from qc_pipeline.sinks import read_table
from qc_pipeline.stages.chat import to_simplified_chars
from qc_pipeline.testing import resample, write_audio

pytestmark = pytest.mark.model

CFG = load_config(overrides=("run.progress=false",))


@pytest.fixture(scope="module")
def batch(tmp_path_factory, samples, whisper_base):
    """One batch mixing good calls, every kind of bad input, and chat sessions."""
    inp = tmp_path_factory.mktemp("inputs")
    out = tmp_path_factory.mktemp("out")
    stereo, _ = load_audio(samples / "calls" / "stereo_call_8k.wav")
    shutil.copy(samples / "calls" / "stereo_call_8k.wav", inp / "stereo_call.wav")
    write_audio(inp / "客服通话_张三.wav", stereo[:, : 16000 * 13], 16000)        # unicode name, 2 turns
    # AMR-NB is 8 kHz mono telephony; the agent channel alone = one voice (3 agent lines)
    write_audio(inp / "tel_8k_mono.amr", resample(stereo[0:1, : 16000 * 33], 16000, 8000), 8000)
    (inp / "zero.wav").write_bytes(b"")
    (inp / "notes.wav").write_text("not audio at all\n" * 100, encoding="utf-8")
    data = (inp / "stereo_call.wav").read_bytes()
    (inp / "truncated.wav").write_bytes(data[: len(data) // 3])
    write_audio(inp / "silence.wav", np.zeros((2, 16000 * 5), np.float32), 16000)
    write_audio(inp / "hiss.flac", (np.random.default_rng(0).normal(0, 0.003, 16000 * 5)).astype(np.float32), 16000)
    six = np.zeros((6, 16000), np.int16)
    from fractions import Fraction

    import av

    with av.open(str(inp / "six_channel.wav"), "w", format="wav") as c:
        st = c.add_stream("pcm_s16le", rate=16000, layout="5.1")
        fr = av.AudioFrame.from_ndarray(six.T.reshape(1, -1).copy(), format="s16", layout="5.1")
        fr.sample_rate, fr.pts, fr.time_base = 16000, 0, Fraction(1, 16000)
        for p in list(st.encode(fr)) + list(st.encode(None)):
            c.mux(p)
    shutil.copy(samples / "chats" / "jddc_3.jsonl", inp / "chats.jsonl")
    stats = run_batch([str(inp)], str(out), CFG, workers=1)
    return out, stats


def _sessions(out):
    return {r["call_id"]: r for r in read_table(out, "sessions").to_pylist()}


def _utts(out, call_id):
    rows = [r for r in read_table(out, "utterances").to_pylist() if r["call_id"] == call_id]
    return sorted(rows, key=lambda r: r["turn_index"])


def test_every_input_has_exactly_one_session_row(batch):
    out, stats = batch
    rows = read_table(out, "sessions").to_pylist()
    ids = [r["call_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 12  # 9 files + 3 chats
    assert stats.ok + sum(stats.failed.values()) == 12


def test_bad_inputs_are_error_rows_with_reasons(batch):
    s = _sessions(batch[0])
    assert (s["zero"]["status"], s["zero"]["error_reason"]) == ("failed", "empty_file")
    assert s["notes"]["error_reason"] == "not_audio"
    assert s["six_channel"]["error_reason"] == "unsupported_channels"
    assert s["silence"]["error_reason"] == "no_speech"
    assert s["hiss"]["error_reason"] == "no_speech"
    assert all(s[k]["error_detail"] for k in ("zero", "notes", "six_channel", "silence"))


def test_truncated_file_is_transcribed_and_flagged(batch):
    s = _sessions(batch[0])["truncated"]
    assert s["status"] == "ok" and "truncated_audio" in s["flags"]
    assert 15 < s["duration_s"] < 25
    assert len(_utts(batch[0], "truncated")) >= 3


def test_stereo_roles_carry_the_right_words(batch, ref_lines):
    out = batch[0]
    s = _sessions(out)["stereo_call"]
    assert (s["status"], s["channels"], s["sample_rate"], s["agent_channel"]) == ("ok", 2, 8000, 0)
    utts = _utts(out, "stereo_call")
    assert [u["role"] for u in utts] == ["agent" if spk == "A" else "customer" for spk, _ in ref_lines]
    for u, (_spk, ref) in zip(utts, ref_lines):
        errors, n = cer(ref, u["text"])
        assert errors / n < 0.45, (ref, u["text"])
    agent_text = "".join(u["text"] for u in utts if u["role"] == "agent")
    customer_text = "".join(u["text"] for u in utts if u["role"] == "customer")
    assert "投诉" in customer_text and "投诉" not in agent_text
    assert "再见" in agent_text
    assert all(u["channel"] == (0 if u["role"] == "agent" else 1) for u in utts)
    starts = [u["start"] for u in utts]
    assert starts == sorted(starts)


def test_words_have_timestamps_inside_their_turn(batch):
    for u in _utts(batch[0], "stereo_call"):
        assert u["words"]
        for w in u["words"]:
            assert u["start"] - 0.5 <= w["start"] <= w["end"] <= u["end"] + 0.5


def test_output_is_simplified_chinese_only(batch):
    texts = [r["text"] for r in read_table(batch[0], "utterances").to_pylist()]
    assert texts
    # no traditional character left (character-level check: the Taiwan-phrasing converter would also
    # rewrite simplified 么 to 幺, which typed chat keeps)
    assert all(to_simplified_chars(t) == t for t in texts)


def test_unicode_name_and_amr_telephony(batch, ref_lines):
    s = _sessions(batch[0])
    assert s["客服通话_张三"]["status"] == "ok" and s["客服通话_张三"]["n_utterances"] == 2
    amr = s["tel_8k_mono"]
    assert amr["status"] == "ok" and amr["sample_rate"] == 8000 and amr["channels"] == 1
    assert amr["n_speakers"] == 1 and "single_speaker" in amr["flags"] and "low_role_confidence" in amr["flags"]
    assert {u["role"] for u in _utts(batch[0], "tel_8k_mono")} == {"agent"}  # it is the agent's greeting
    text = "".join(u["text"] for u in _utts(batch[0], "tel_8k_mono"))
    ref = "".join(t for _, t in ref_lines[0:5:2])  # the three agent lines in the first 33 s
    errors, n = cer(ref, text)
    assert errors / n < 0.3, text


def test_chat_sessions_pass_through(batch):
    s = _sessions(batch[0])
    chats = [r for r in s.values() if r["kind"] == "chat"]
    assert len(chats) == 3 and all(r["status"] == "ok" for r in chats)
    utts = _utts(batch[0], chats[0]["call_id"])
    assert {u["role"] for u in utts} == {"agent", "customer"} and all(u["channel"] == -1 for u in utts)


def test_parquet_schema_is_the_declared_one(batch):
    out = batch[0]
    for table, schema in (("sessions", SESSIONS), ("utterances", UTTERANCES)):
        parts = list((out / table).glob("run_date=*/part-*.parquet"))
        assert parts
        for p in parts:
            got = pq.read_schema(p)
            assert got.equals(schema, check_metadata=False)
            assert got.metadata[b"qc_pipeline.schema_version"] == SCHEMA_VERSION.encode()


def test_sessions_carry_versions(batch):
    s = _sessions(batch[0])["stereo_call"]
    from qc_pipeline.asr.install import WHISPER_BASE_SHA256

    assert s["asr_model"] == "whisper-base" and s["asr_model_sha256"] == WHISPER_BASE_SHA256["model.bin"]
    assert s["config_hash"] == CFG.fingerprint() and s["pipeline_version"]


def test_rerun_skips_done_calls_and_duplicates_nothing(batch, tmp_path):
    out, _ = batch
    before = read_table(out, "sessions").num_rows
    inputs = sorted({r["source_path"] for r in read_table(out, "sessions").to_pylist() if r["source_path"]})
    stats = run_batch([str(p) for p in inputs], str(out), CFG, workers=1)
    assert stats.skipped_done == len(inputs) and stats.ok == 0
    assert read_table(out, "sessions").num_rows == before


def test_crash_between_parts_is_repaired(tmp_path, samples, whisper_base):
    """Simulate a crash after the utterances part was written but before its sessions part."""
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(samples / "chats" / "jddc_3.jsonl", inp / "c.jsonl")
    out = tmp_path / "out"
    cfg = load_config(overrides=("run.progress=false", "output.flush_every=2"))
    run_batch([str(inp)], str(out), cfg, workers=1)
    parts = sorted((out / "sessions").glob("run_date=*/part-*.parquet"))
    assert len(parts) == 2
    parts[-1].unlink()  # the last commit never happened
    (parts[-1].parent / "junk.parquet.tmp").write_bytes(b"half-written")
    stats = run_batch([str(inp)], str(out), cfg, workers=1)
    assert stats.skipped_done == 2 and stats.ok == 1
    sessions = read_table(out, "sessions").to_pylist()
    assert len(sessions) == len({r["call_id"] for r in sessions}) == 3
    utt = read_table(out, "utterances").to_pylist()
    keys = [(r["call_id"], r["turn_index"]) for r in utt]
    assert len(keys) == len(set(keys))
    assert not list(out.rglob("*.tmp"))


def test_two_workers_give_the_same_transcripts(tmp_path, samples, whisper_base):
    inp = tmp_path / "in"
    inp.mkdir()
    stereo, _ = load_audio(samples / "calls" / "stereo_call_8k.wav")
    for i in range(2):
        write_audio(inp / f"call{i}.wav", stereo[:, 16000 * 7 * i: 16000 * (7 * i + 13)], 16000)
    one = run_batch([str(inp)], str(tmp_path / "one"), CFG, workers=1)
    two = run_batch([str(inp)], str(tmp_path / "two"), CFG, workers=2)
    assert one.ok == two.ok == 2
    key = lambda t: sorted((r["call_id"], r["turn_index"], r["text"]) for r in t.to_pylist())  # noqa: E731
    assert key(read_table(tmp_path / "one", "utterances")) == key(read_table(tmp_path / "two", "utterances"))


def test_cli_run_and_summary(tmp_path, samples, whisper_base):
    from qc_pipeline.cli import main

    rc = main(["run", str(samples / "chats"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    summary = json.loads((tmp_path / "o" / "_runs" / "last_summary.json").read_text("utf-8"))
    assert summary["ok"] == 3 and summary["chat_sessions"] == 3
    assert main(["run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert main(["run", str(samples / "chats"), "--out", str(tmp_path / "o2"), "--set", "asr.beam_sze=2"]) == 2


def test_missing_model_error_names_the_fix(tmp_path, samples, monkeypatch):
    from qc_pipeline.errors import SetupError

    monkeypatch.setenv("QC_PIPELINE_MODELS_DIR", str(tmp_path / "empty"))
    with pytest.raises(SetupError, match="qc-pipeline models install"):
        run_batch([str(samples / "calls" / "stereo_call_8k.wav")], str(tmp_path / "o"), CFG, workers=1)


def test_unwritable_output_is_a_clear_error(tmp_path, samples):
    import os

    from qc_pipeline.errors import SetupError

    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "sub"  # a path under a regular file can never be created, even by root
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
    with pytest.raises(SetupError, match="not writable"):
        run_batch([str(samples / "chats")], str(out), CFG, workers=1)


@pytest.mark.parametrize("batch_size", [0, 4])
def test_sequential_and_batched_decoding_keep_channels_and_times_apart(tmp_path, samples, ref_lines, batch_size):
    """batch_size 0: one transcribe per window (temperature fallback); > 0 (auto: 4 on CPU, 16 on GPU):
    every window of both channels in one batched pass through one buffer.  Either way words must land on
    their own channel, turn and time."""
    cfg = load_config(overrides=("run.progress=false", f"asr.batch_size={batch_size}", "scoring.enabled=false"))
    stats = run_batch([str(samples / "calls" / "manifest.csv")], str(tmp_path), cfg, workers=1)
    assert stats.ok == 2
    utts = _utts(tmp_path, "demo-stereo-001")
    assert [u["role"] for u in utts] == ["agent" if spk == "A" else "customer" for spk, _ in ref_lines]
    for u, (_spk, ref) in zip(utts, ref_lines):
        errors, n = cer(ref, u["text"])
        assert errors / n < 0.45, (ref, u["text"])
        assert all(u["start"] - 0.5 <= w["start"] <= w["end"] <= u["end"] + 0.5 for w in u["words"])


def test_cross_call_batching_gives_each_call_its_own_words(tmp_path, samples):
    """run.calls_per_task > 1 with batched ASR: several calls' windows share batched passes; every call
    must still get exactly its own transcript (same as decoding it alone), and a bad call in the group
    stays an error row of its own."""
    inp = tmp_path / "in"
    inp.mkdir()
    stereo, _ = load_audio(samples / "calls" / "stereo_call_8k.wav")
    for i, (a, b) in enumerate([(0, 13), (7, 20), (25, 40)]):
        write_audio(inp / f"call{i}.wav", stereo[:, 16000 * a: 16000 * b], 16000)
    (inp / "zero.wav").write_bytes(b"")
    base = ("run.progress=false", "asr.batch_size=4", "scoring.enabled=false")
    alone = run_batch([str(inp)], str(tmp_path / "alone"), load_config(overrides=base + ("run.calls_per_task=1",)),
                      workers=1)
    grouped = run_batch([str(inp)], str(tmp_path / "grouped"),
                        load_config(overrides=base + ("run.calls_per_task=4",)), workers=2)
    assert (alone.ok, dict(alone.failed)) == (grouped.ok, dict(grouped.failed)) == (3, {"empty_file": 1})
    key = lambda t: sorted((r["call_id"], r["turn_index"], r["channel"], r["text"]) for r in t.to_pylist())  # noqa: E731
    a, g = key(read_table(tmp_path / "alone", "utterances")), key(read_table(tmp_path / "grouped", "utterances"))
    assert a == g and {r[0] for r in a} == {"call0", "call1", "call2"}
