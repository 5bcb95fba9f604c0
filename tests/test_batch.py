"""A nightly batch you can leave alone (issue 11): the output lock, a worker process at any --workers,
a row or a summary line for every input, exit codes, --retry-failed, the smaller items (folder
symlinks, AMR, started_at, Parquet maps) and compaction.  Chats only: no ASR model needed."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qc_pipeline.config import load_config
from qc_pipeline.errors import Reason, SetupError
from qc_pipeline.records import CallRecord, CallSource, ChatTurn
from qc_pipeline.runner import run_batch
from qc_pipeline.schema import TABLES
from qc_pipeline.sinks import read_table
from qc_pipeline.stages.base import Stage
from tests.test_reliability import check_output, finish, start_cli, write_chats

CFG = load_config(overrides=("run.progress=false",))


def _chat(cid: str) -> CallSource:
    return CallSource(call_id=cid, kind="chat", chat_turns=(ChatTurn("agent", "您好"), ChatTurn("customer", "在吗")))


class Misbehave(Stage):
    """Calls whose id starts with 'hang' never return; 'poison' ones kill their process."""

    name = "misbehave"
    kinds = ("chat",)

    def process(self, record: CallRecord) -> CallRecord:
        if record.call_id.startswith("hang"):
            time.sleep(60)
        if record.call_id.startswith("poison"):
            os.kill(os.getpid(), 9)
        return record


def misbehaving_stages(cfg):
    from qc_pipeline.stages.chat import ChatStage
    from qc_pipeline.stages.decode import DecodeStage

    return [DecodeStage(cfg.audio), Misbehave(), ChatStage()]


# -- item 2: one run per output folder ------------------------------------------------------------

def test_a_second_run_into_the_same_folder_fails_fast_or_waits(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    ids = set(write_chats(inp / "chats.jsonl", 60))
    first = start_cli([inp], out)
    try:
        lock = out / "_runs" / "lock"
        deadline = time.monotonic() + 120
        while not (lock.exists() and f"pid {first.pid} " in lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        t0 = time.monotonic()
        rc, err = finish(start_cli([inp], out), timeout=60)
        assert rc == 4 and time.monotonic() - t0 < 30, err[-2000:]
        assert f"output folder {out} is in use by another qc-pipeline run" in err and "--wait-lock" in err
        assert f"pid {first.pid}" in err
        waiter = start_cli([inp], out, "--wait-lock")
        rc1, err1 = finish(first)
        rc2, err2 = finish(waiter)
    finally:
        first.kill()
    assert rc1 == 0 and rc2 == 0, (err1[-2000:], err2[-2000:])
    check_output(out, ids)  # every call exactly once
    summary = json.loads((out / "_runs" / "last_summary.json").read_text("utf-8"))
    assert summary["skipped_already_done"] == len(ids) and summary["ok"] == 0


# -- item 3: every call in a worker process, at any --workers ----------------------------------------

def test_one_worker_still_isolates_hung_and_poison_calls(tmp_path):
    from qc_pipeline.executors import LocalExecutor

    cfg = load_config(overrides=("run.progress=false", "run.call_timeout_s=3"))
    chats = tmp_path / "c.jsonl"
    chats.write_text("".join(json.dumps({"dialogue_id": cid, "turns": [{"role": "agent", "text": "您好"}]}) + "\n"
                             for cid in ("a", "hang_1", "b", "poison_1", "c")), "utf-8")
    t0 = time.monotonic()
    stats = run_batch([str(chats)], str(tmp_path / "out"), cfg,
                      executor=LocalExecutor(cfg, 1, build=misbehaving_stages))
    assert time.monotonic() - t0 < 55  # the hang (60 s) was cut at the timeout
    rows = {r["call_id"]: r for r in read_table(tmp_path / "out", "sessions").to_pylist()}
    assert {k: r["error_reason"] for k, r in rows.items()} == {
        "a": None, "b": None, "c": None, "hang_1": Reason.CALL_TIMEOUT, "poison_1": Reason.WORKER_CRASHED}
    assert (stats.ok, dict(stats.failed)) == (3, {"call_timeout": 1, "worker_crashed": 1})


# -- item 5: every input gets a row or a line in the summary ---------------------------------------

def test_every_input_gets_a_row_or_a_summary_line(tmp_path):
    from qc_pipeline.inputs import discover

    folder = tmp_path / "calls"
    (folder / "sub").mkdir(parents=True)
    (folder / "call.amr").write_bytes(b"x")
    (folder / "call.opus").write_bytes(b"x")
    (folder / "sub" / "call.wav").write_bytes(b"x")            # another folder: no clash
    good = {"dialogue_id": "good", "turns": [{"role": "agent", "text": "您好"}]}
    (folder / "chats.jsonl").write_text('{"dialogue_id": "first", "turns": [{"role": "agent"\n'
                                        + json.dumps(good) + "\n", "utf-8")
    (folder / "manifest.jsonl").write_text(json.dumps({"call_id": "m1", "path": "call.amr"}) + "\n", "utf-8")
    direct = tmp_path / "direct.jsonl"                         # first line valid JSON, not a session
    direct.write_text(json.dumps({"note": "export of 2026-11-20"}) + "\n" + json.dumps({**good, "dialogue_id": "d1"})
                      + "\n", "utf-8")
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("call_id,path\n通话1,录音1.wav\n".encode("gbk"))
    found = discover([str(folder), str(direct), str(gbk)])
    ids = {s.call_id: (s.input_error or (None,))[0] for s in found.sources}
    assert ids == {"call.amr": None, "call.opus": None, "sub/call": None, "chats:1": Reason.BAD_CHAT_SESSION,
                   "good": None, "direct:1": Reason.BAD_CHAT_SESSION, "d1": None}
    assert {(Path(s.input).name, s.reason) for s in found.skipped} == {("manifest.jsonl", Reason.BAD_MANIFEST),
                                                                        ("gbk.csv", Reason.BAD_MANIFEST)}


# -- item 6: exit codes and the summary ------------------------------------------------------------

def test_exit_code_is_3_when_calls_failed_unless_allowed(tmp_path):
    from qc_pipeline.cli import main

    inp = tmp_path / "in"
    inp.mkdir()
    write_chats(inp / "a.jsonl", 2)
    write_chats(inp / "b.jsonl", 1)                            # chat_0000 again: a duplicate id
    (inp / "bad.jsonl").write_text(json.dumps({"dialogue_id": "bad", "turns": []}) + "\n", "utf-8")
    (tmp_path / "gbk.csv").write_bytes("call_id,path\n通话1,录音1.wav\n".encode("gbk"))
    args = ["run", str(inp), str(tmp_path / "gbk.csv"), "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "o1")]) == 3
    summary = json.loads((tmp_path / "o1" / "_runs" / "last_summary.json").read_text("utf-8"))
    assert summary["failed"] == {"bad_chat_session": 1} and summary["duplicate_ids"] == ["chat_0000"]
    assert [s["reason"] for s in summary["inputs_skipped"]] == [Reason.BAD_MANIFEST]
    assert main(args + ["--out", str(tmp_path / "o2"), "--allow-failures"]) == 0
    assert main(["run", str(inp / "a.jsonl"), "--no-progress", "--out", str(tmp_path / "o3")]) == 0


# -- item 7: --retry-failed ---------------------------------------------------------------------------

def test_retry_failed_reprocesses_those_reasons_and_the_new_row_wins(tmp_path, whisper_base):
    from qc_pipeline.cli import main
    from qc_pipeline.executors import LocalExecutor

    cfg = load_config(overrides=("run.progress=false", "run.call_timeout_s=3"))
    chats = tmp_path / "c.jsonl"
    chats.write_text("".join(json.dumps({"dialogue_id": cid, "turns": [{"role": "agent", "text": "您好"}]}) + "\n"
                             for cid in ("hang_1", "ok_1")) + json.dumps({"dialogue_id": "bad", "turns": []}) + "\n",
                     "utf-8")
    manifest = tmp_path / "m.csv"
    manifest.write_text("call_id,path\nlate,late.wav\n", "utf-8")
    out = tmp_path / "out"
    first = run_batch([str(chats), str(manifest)], str(out), cfg,
                      executor=LocalExecutor(cfg, 1, build=misbehaving_stages))
    assert dict(first.failed) == {"call_timeout": 1, "bad_chat_session": 1, "file_not_found": 1}
    again = run_batch([str(chats), str(manifest)], str(out), cfg)       # no retry: all done
    assert (again.skipped_done, again.ok, again.retried) == (4, 0, 0)
    (tmp_path / "late.wav").write_bytes(b"")                            # the file arrived (empty, as it happens)
    base = ["run", str(chats), str(manifest), "--out", str(out), "--no-progress", "--allow-failures"]
    assert main(base + ["--retry-failed", "call_timeout"]) == 0         # only that reason
    latest = {r["call_id"]: r["error_reason"] for r in read_table(out, "sessions", latest=True).to_pylist()}
    assert latest == {"hang_1": None, "ok_1": None, "bad": "bad_chat_session", "late": "file_not_found"}
    assert main(base + ["--retry-failed"]) == 0                         # the default set: file_not_found too
    latest = {r["call_id"]: r["error_reason"] for r in read_table(out, "sessions", latest=True).to_pylist()}
    assert latest == {"hang_1": None, "ok_1": None, "bad": "bad_chat_session", "late": "empty_file"}
    everything = collections.Counter(r["call_id"] for r in read_table(out, "sessions").to_pylist())
    assert everything == {"hang_1": 2, "late": 2, "ok_1": 1, "bad": 1}  # append-only history
    # dependent tables follow the winning row: hang_1 has its utterances once, from the retry
    utt = read_table(out, "utterances", latest=True).to_pylist()
    assert [u["call_id"] for u in utt].count("hang_1") == 1
    summary = json.loads((out / "_runs" / "last_summary.json").read_text("utf-8"))
    assert summary["retried_failed"] == 1 and summary["skipped_already_done"] == 3
    with pytest.raises(SetupError, match="unknown reason code"):
        run_batch([str(chats)], str(out), cfg, retry_failed=("nope",))


def test_retry_failed_reads_the_committed_sessions_once(tmp_path, monkeypatch):
    """What is done and what is retried come from one read of the sessions parts, not one read each."""
    chats = tmp_path / "c.jsonl"
    chats.write_text(json.dumps({"dialogue_id": "ok_1", "turns": [{"role": "agent", "text": "您好"}]}) + "\n", "utf-8")
    manifest = tmp_path / "m.csv"
    manifest.write_text("call_id,path\nlate,late.wav\n", "utf-8")
    out = tmp_path / "out"
    assert dict(run_batch([str(chats), str(manifest)], str(out), CFG).failed) == {"file_not_found": 1}
    reads = []
    real = pq.read_table

    def counting(source, *args, **kwargs):
        if "sessions" in Path(str(source)).parts:
            reads.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", counting)
    committed = sorted((out / "sessions").glob("run_date=*/part-*.parquet"))
    again = run_batch([str(chats), str(manifest)], str(out), CFG, retry_failed=(Reason.FILE_NOT_FOUND,))
    assert (again.skipped_done, again.retried, dict(again.failed)) == (1, 1, {"file_not_found": 1})
    assert sorted(map(Path, reads)) == committed  # each committed part once


# -- item 8: the smaller ones ---------------------------------------------------------------------

def test_folder_input_refuses_symlinks_leading_outside(tmp_path):
    from qc_pipeline.inputs import discover

    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    folder = tmp_path / "calls"
    folder.mkdir()
    (folder / "escape.wav").symlink_to(outside)
    (folder / "dev.wav").symlink_to("/dev/zero")
    (folder / "inside.wav").write_bytes(b"x")
    (folder / "alias.wav").symlink_to(folder / "inside.wav")   # stays inside: fine
    found = discover([str(folder)])
    reasons = {s.call_id: (s.input_error or (None,))[0] for s in found.sources}
    assert reasons == {"escape": Reason.PATH_OUTSIDE_ROOT, "dev": Reason.PATH_OUTSIDE_ROOT, "inside": None,
                       "alias": None}


def _amr(path: Path, pcm, bit_rate: int) -> bytes:
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="amr") as c:
        s = c.add_stream("libopencore_amrnb", rate=8000, layout="mono")
        s.bit_rate = bit_rate
        for i in range(0, len(pcm) - 160, 160):
            fr = av.AudioFrame.from_ndarray(pcm[None, i:i + 160].copy(), format="s16", layout="mono")
            fr.sample_rate, fr.pts, fr.time_base = 8000, i, Fraction(1, 8000)
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path.read_bytes()


def test_a_complete_amr_whose_codec_mode_changes_is_not_truncated(tmp_path, samples):
    """AMR has no length in its header: FFmpeg estimates one from the first frames' bit rate, which a
    call that starts at 4.75 kbit/s and goes on at 12.2 kbit/s overstates by ~70 %."""
    import numpy as np

    from qc_pipeline.audio import load_audio
    from qc_pipeline.testing import resample

    stereo, _ = load_audio(samples / "calls" / "stereo_call_8k.wav")
    pcm = (resample(stereo[0:1, : 16000 * 20], 16000, 8000)[0] * 32767).astype(np.int16)
    low = _amr(tmp_path / "low.amr", pcm[: 8000 * 10], 4750)
    high = _amr(tmp_path / "high.amr", pcm[8000 * 10:], 12200)
    (tmp_path / "call.amr").write_bytes(low + high[len(b"#!AMR\n"):])
    audio, info = load_audio(tmp_path / "call.amr")
    assert abs(info.duration_s - 20.0) < 0.1 and not info.truncated
    (tmp_path / "cut.amr").write_bytes((tmp_path / "call.amr").read_bytes()[:-1000])  # cut mid-frame
    assert load_audio(tmp_path / "cut.amr")[1].duration_s < 19.9


def test_started_at_is_validated_and_stored_as_a_timestamp(tmp_path):
    chats = tmp_path / "c.jsonl"
    rows = [("aware", "2026-11-20T09:15:00+08:00"), ("naive", "2026-11-20 09:15:00"), ("excel", "2026/11/20 09:15"),
            ("none", None), ("garbage", "yesterday morning")]
    chats.write_text("".join(json.dumps({"dialogue_id": cid, "started_at": when,
                                         "turns": [{"role": "agent", "text": "您好"}]}) + "\n"
                             for cid, when in rows), "utf-8")
    out = tmp_path / "out"
    run_batch([str(chats)], str(out), load_config(overrides=("run.progress=false", "scoring.enabled=false")))
    [part] = out.glob("sessions/*/*.parquet")
    assert pq.read_schema(part).field("started_at").type == pa.timestamp("ms", tz="UTC")
    got = {r["call_id"]: r for r in read_table(out, "sessions").to_pylist()}
    utc_0115 = dt.datetime(2026, 11, 20, 1, 15, tzinfo=dt.timezone.utc)   # run.input_timezone: Asia/Shanghai
    assert got["aware"]["started_at"] == got["naive"]["started_at"] == got["excel"]["started_at"] == utc_0115
    assert got["none"]["started_at"] is None and got["none"]["status"] == "ok"
    assert got["garbage"]["error_reason"] == Reason.BAD_CHAT_SESSION and "ISO 8601" in got["garbage"]["error_detail"]


def test_drops_and_stage_seconds_are_parquet_maps(tmp_path):
    from qc_pipeline.sinks.rows import session_row

    rec = CallRecord(source=_chat("c1"), drops=(("short_span", 3), ("hallucination_credit", 1)),
                     timings=(("decode", 0.5), ("asr", 2.0)))
    out = tmp_path / "out"
    from qc_pipeline.sinks import ParquetSink

    sink = ParquetSink(out, run_id="r1", config_hash="x")
    sink.open()
    sink.add(rec)
    sink.close()
    [part] = out.glob("sessions/*/*.parquet")
    schema = pq.read_schema(part)
    assert pa.types.is_map(schema.field("drops").type) and pa.types.is_map(schema.field("stage_seconds").type)
    assert schema.metadata[b"qc_pipeline.schema_version"] == b"2"
    assert session_row(rec, run_id="r", asr_model="", asr_sha="", config_hash="")["drops"] == {
        "short_span": 3, "hallucination_credit": 1}
    # a folder written with schema version 1 (lists of key/value structs, text started_at) is refused
    old = pa.schema(schema, metadata={**schema.metadata, b"qc_pipeline.schema_version": b"1"})
    pq.write_table(pq.read_table(part).cast(old), part)
    with pytest.raises(SetupError, match="schema version 1; this qc-pipeline writes version 2"):
        run_batch([], str(out), CFG)
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"SELECT drops['short_span'], stage_seconds['asr'] FROM read_parquet('{part}')").fetchall()
    assert got == [(3, 2.0)]


# -- item 9: larger parts, and compaction ----------------------------------------------------------

def _content(out: Path) -> dict:
    keys = {"sessions": ("call_id",), "utterances": ("call_id", "turn_index"), "scores": ("call_id",),
            "item_results": ("call_id", "item_id")}
    return {t: sorted(({k: v for k, v in r.items() if k != "processed_at"} for r in read_table(out, t).to_pylist()),
                      key=lambda r: tuple(str(r[k]) for k in ks)) for t, ks in keys.items()}


def test_default_flush_writes_one_part_for_a_small_night(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_chats(inp / "chats.jsonl", 40)
    run_batch([str(inp)], str(tmp_path / "out"), CFG)
    assert len(list((tmp_path / "out").rglob("*.parquet"))) == len(TABLES)   # one per table, not 5 per table


@pytest.fixture
def many_parts(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    ids = set(write_chats(inp / "chats.jsonl", 12))
    run_batch([str(inp)], str(out), load_config(overrides=("run.progress=false", "output.flush_every=2")))
    assert len(list(out.glob("sessions/*/*.parquet"))) == 6
    return inp, out, ids


def test_compact_rewrites_a_day_into_one_file_per_table(many_parts):
    from qc_pipeline.cli import main

    inp, out, ids = many_parts
    before = _content(out)
    [day] = [p.name.split("=")[1] for p in (out / "sessions").iterdir()]
    assert main(["compact", str(out), "--date", day]) == 0
    assert sorted(p.relative_to(out).parts[0] for p in out.rglob("*.parquet")) == sorted(TABLES)
    assert _content(out) == before
    check_output(out, ids)
    assert run_batch([str(inp)], str(out), CFG).skipped_done == len(ids)   # resume still sees every call


@pytest.mark.parametrize("crash_at", ["before_journal", "after_journal", "markers_removed"])
def test_an_interrupted_compaction_loses_and_duplicates_nothing(many_parts, monkeypatch, crash_at):
    from qc_pipeline.sinks import compact as mod

    inp, out, ids = many_parts
    before = _content(out)

    class Crash(Exception):
        pass

    real_replace = os.replace

    def replace(src, dst):
        dst = Path(dst)
        if (crash_at == "before_journal" and dst.suffix == ".json") or (
                crash_at == "markers_removed" and dst.parent.parent.name == "sessions"):
            raise Crash  # markers_removed: the old sessions parts are gone, the new ones still staged
        return real_replace(src, dst)

    def roll_forward(root, journal):
        raise Crash

    monkeypatch.setattr(mod.os, "replace", replace)
    if crash_at == "after_journal":
        monkeypatch.setattr(mod, "_roll_forward", roll_forward)
    with pytest.raises(Crash):
        mod.compact(out)
    monkeypatch.undo()
    assert any((out / mod.JOURNAL_DIR).iterdir())
    stats = run_batch([str(inp)], str(out), CFG)   # the next run opens the folder: recovery first
    assert stats.skipped_done == len(ids) and stats.ok == 0
    assert _content(out) == before
    check_output(out, ids)
    assert not any((out / mod.JOURNAL_DIR).iterdir())
    compacted = crash_at != "before_journal"
    assert len(list(out.glob("sessions/*/*.parquet"))) == (1 if compacted else 6)
