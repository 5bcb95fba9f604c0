"""Reliability (issue #6): worker and main-process deaths, full or unwritable output, adversarial inputs.

The process tests run the real CLI in a subprocess on real chats (and one real call) and kill real
processes with SIGKILL; the disk-full test uses a real 64 KiB tmpfs (skipped where mounting is not
permitted).  Nothing is mocked.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from qc_pipeline.audio import load_audio
from qc_pipeline.config import load_config
from qc_pipeline.errors import CallError, Reason
from qc_pipeline.records import CallSource, ChatTurn
from qc_pipeline.sinks import DEPENDENT_TABLES, read_table
from qc_pipeline.stages.base import Stage
from qc_pipeline.testing import write_audio

REPO = Path(__file__).resolve().parents[1]
SHARED_CHATS = Path(os.environ.get("QC_SHARED_DATA", REPO.parent / "shared" / "data")) / "jddc_sample" / "dev.jsonl"
CFG = load_config(overrides=("run.progress=false",))


# -- helpers ---------------------------------------------------------------------------------

def _real_chats() -> list[dict]:
    src = SHARED_CHATS if SHARED_CHATS.is_file() else REPO / "samples" / "chats" / "jddc_3.jsonl"
    return [json.loads(line) for line in src.read_text("utf-8").splitlines() if line.strip()]


def write_chats(path: Path, n: int, prefix: str = "chat") -> list[str]:
    """``n`` real chat sessions (cycled) with unique ids; returns the ids."""
    base = _real_chats()
    ids, lines = [], []
    for i in range(n):
        cid = f"{prefix}_{i:04d}"
        ids.append(cid)
        lines.append(json.dumps({**base[i % len(base)], "dialogue_id": cid}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ids


def start_cli(inputs: list[Path], out: Path, *extra: str, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "qc_pipeline", "run", *map(str, inputs), "--out", str(out), "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def session_parts(out: Path) -> list[Path]:
    return sorted((out / "sessions").glob("run_date=*/part-*.parquet"))


def worker_pids(parent: int) -> list[int]:
    """Spawned multiprocessing workers of ``parent`` (not its resource tracker), from /proc."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(d.name))
    return sorted(pids)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def check_output(out: Path, expected_ids: set[str]) -> dict[str, dict]:
    """Every call exactly once, no duplicate rows, every part readable and committed."""
    for f in out.rglob("*.parquet"):
        pq.read_table(f)  # readable
    assert not list(out.rglob("*.tmp")), "temp files left visible"
    committed = {p.name for p in session_parts(out)}
    for table in DEPENDENT_TABLES:
        orphans = {p.name for p in (out / table).glob("run_date=*/part-*.parquet")} - committed
        assert not orphans, f"{table} parts without a sessions twin: {orphans}"
    rows = read_table(out, "sessions").to_pylist()
    counts = collections.Counter(r["call_id"] for r in rows)
    assert {k: v for k, v in counts.items() if v > 1} == {}, "duplicated sessions"
    assert set(counts) == expected_ids
    utt = read_table(out, "utterances").select(["call_id", "turn_index"]).to_pylist()
    assert len(utt) == len({(u["call_id"], u["turn_index"]) for u in utt}), "duplicated utterances"
    scores = read_table(out, "scores").column("call_id").to_pylist()
    assert len(scores) == len(set(scores)), "duplicated scores"
    return {r["call_id"]: r for r in rows}


# -- a worker dies: restart, retry, and a poison call is written after two deaths ------------

class KillOnPoison(Stage):
    """Test stage: a call whose id starts with 'poison' takes its worker process down (SIGKILL)."""

    name = "poison"
    kinds = ("chat",)

    def process(self, record):
        if record.source.call_id.startswith("poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        return record


def poison_stages(cfg):
    """Importable stage builder for spawned workers: no models, so the workers start in a second."""
    from qc_pipeline.stages.chat import ChatStage

    return [KillOnPoison(), ChatStage()]


def _chat(cid: str) -> CallSource:
    return CallSource(call_id=cid, kind="chat", chat_turns=(ChatTurn("agent", "您好"), ChatTurn("customer", "在吗")))


def test_poison_call_becomes_worker_crashed_and_the_rest_finish(caplog):
    from qc_pipeline.executors.pool import WorkerPool

    sources = [_chat(f"c{i}") for i in range(6)] + [_chat("poison_1")] + [_chat(f"d{i}") for i in range(6)]
    results = []
    with caplog.at_level("WARNING", logger="qc_pipeline.executors.pool"):
        WorkerPool(CFG, 2, results.append, build=poison_stages).run(sources)
    by_id = collections.Counter(r.call_id for r in results)
    assert by_id == collections.Counter(s.call_id for s in sources)  # each exactly once
    bad = [r for r in results if not r.ok]
    assert [(r.call_id, r.error_reason) for r in bad] == [("poison_1", Reason.WORKER_CRASHED)]
    assert "SIGKILL" in bad[0].error_detail and "2 times" in bad[0].error_detail
    deaths = [r for r in caplog.records if "died (killed by SIGKILL)" in r.getMessage()]
    assert len(deaths) == 2


@pytest.mark.model
def test_sigkill_workers_mid_batch_run_finishes_nothing_lost_or_duplicated(tmp_path, samples, whisper_base):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    stereo, _ = load_audio(samples / "calls" / "stereo_call_8k.wav")
    write_audio(inp / "a_call.wav", stereo[:, : 16000 * 10], 16000)  # first in order: on a worker
    ids = set(write_chats(inp / "chats.jsonl", 150)) | {"a_call"}
    proc = start_cli([inp], out, "--workers", "2", "--set", "output.flush_every=2")
    try:
        wait_for(lambda: session_parts(out) or proc.poll() is not None, 180, "the first committed part")
        victims = worker_pids(proc.pid)
        assert proc.poll() is None and len(victims) == 2, "batch ended before the kill"
        for pid in victims:  # both: one is on the real call, the other mid-chats
            os.kill(pid, signal.SIGKILL)
        rc, err = finish(proc)
    finally:
        proc.kill()
    assert rc == 0, err[-3000:]
    assert err.count("died (killed by SIGKILL)") == 2, err[-3000:]
    rows = check_output(out, ids)
    assert all(r["status"] == "ok" for r in rows.values()), {k: r["error_reason"] for k, r in rows.items()
                                                              if r["status"] != "ok"}
    assert rows["a_call"]["n_utterances"] > 0


@pytest.mark.model
def test_sigkill_main_process_then_rerun_resumes(tmp_path, whisper_base):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    ids = set(write_chats(inp / "chats.jsonl", 300))
    proc = start_cli([inp], out, "--workers", "2", "--set", "output.flush_every=4")
    try:
        wait_for(lambda: session_parts(out) or proc.poll() is not None, 180, "the first committed part")
        workers = worker_pids(proc.pid)
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    done_before = len(read_table(out, "sessions"))
    assert 0 < done_before < len(ids), "the kill did not land mid-batch"
    wait_for(lambda: not any(alive(p) for p in workers), 30, "orphaned workers to exit")
    rc, err = finish(start_cli([inp], out, "--workers", "1"))
    assert rc == 0, err[-3000:]
    check_output(out, ids)
    summary = json.loads((out / "_runs" / "last_summary.json").read_text("utf-8"))
    assert summary["skipped_already_done"] == done_before


# -- disk full / unwritable output -------------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode(errors='replace').strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.model
def test_disk_full_clear_error_then_rerun_with_space_completes(tmp_path, tiny_tmpfs):
    inp = tmp_path / "in"
    inp.mkdir()
    ids = set(write_chats(inp / "chats.jsonl", 120))
    out = tiny_tmpfs / "out"
    rc, err = finish(start_cli([inp], out, "--set", "output.flush_every=4"))
    assert rc == 2, err[-3000:]
    assert "Traceback" not in err
    assert f"cannot write results to {out}" in err and "free disk space or choose another --out" in err
    committed = len(read_table(out, "sessions"))
    assert 0 < committed < len(ids), "the disk should fill part-way through the batch"
    check_output(out, set(read_table(out, "sessions").column("call_id").to_pylist()))
    # "free space": move the results to a roomy folder and re-run the same command there
    roomy = tmp_path / "out"
    shutil.copytree(out, roomy)
    rc, err = finish(start_cli([inp], roomy))
    assert rc == 0, err[-3000:]
    check_output(roomy, ids)


def test_unwritable_output_is_a_clear_setup_error(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write_chats(inp / "chats.jsonl", 2)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [blocker / "out"]  # a folder under a file: refused even for root
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode == 0:
        cases.append(ro / "out")
    try:
        for out in cases:
            rc, err = finish(start_cli([inp], out), timeout=60)
            assert rc == 2 and "Traceback" not in err, err[-3000:]
            assert f"output folder {out} is not writable" in err and "choose another --out" in err, err[-2000:]
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


# -- adversarial inputs ------------------------------------------------------------------------

def _wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    pcm = (0.2 * np.sin(np.arange(int(rate * seconds)) * 2 * np.pi * 300 / rate) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(pcm)) + pcm)


def huge_claim_wav(path: Path) -> Path:
    """1 s of audio under a header whose RIFF and data sizes claim ~4 GB (37 h)."""
    data = bytearray(_wav_bytes(1.0))
    data[4:8] = struct.pack("<I", 0xFFFFFFF0)
    data[40:44] = struct.pack("<I", 0xFFFFFF00)
    path.write_bytes(bytes(data))
    return path


def ten_hour_wav(path: Path) -> Path:
    """A genuine 10 h 16 kHz mono WAV (1.15 GB of silence), written sparse so it costs no disk."""
    n = 16000 * 2 * 36000
    head = bytearray(_wav_bytes(0.0))
    head[4:8], head[40:44] = struct.pack("<I", 36 + n), struct.pack("<I", n)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + n)
    return path


def ten_hour_mp3(path: Path) -> Path:
    """A genuine 10 h 8 kHz mono MP3 (36 MB): 10 s of encoded silence repeated; no Xing header, so
    FFmpeg estimates the duration from size and bitrate as it would for a real long recording."""
    from fractions import Fraction

    import av

    chunk = path.with_suffix(".chunk")
    with av.open(str(chunk), "w", format="mp3", options={"write_xing": "0", "id3v2_version": "0"}) as c:
        st = c.add_stream("libmp3lame", rate=8000, layout="mono")
        st.bit_rate = 8000
        for i in range(0, 80000, 1152):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            fr.sample_rate, fr.pts, fr.time_base = 8000, i, Fraction(1, 8000)
            for pk in st.encode(fr):
                c.mux(pk)
        for pk in st.encode(None):
            c.mux(pk)
    data = chunk.read_bytes()
    chunk.unlink()
    with open(path, "wb") as fh:
        for _ in range(3600):
            fh.write(data)
    return path


PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d69a3b0000000049454e44ae426082")


@pytest.mark.parametrize("maker, reason", [(ten_hour_wav, Reason.TOO_LONG), (ten_hour_mp3, Reason.TOO_LONG),
                                           (huge_claim_wav, Reason.BAD_HEADER)])
def test_long_or_lying_files_are_rejected_from_the_header_fast_and_small(tmp_path, maker, reason):
    path = maker(tmp_path / ("x" + (".mp3" if maker is ten_hour_mp3 else ".wav")))
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(CallError) as err:
        load_audio(path)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert err.value.reason == reason, err.value.detail
    assert elapsed < 0.5 and peak < 5_000_000, (elapsed, peak)


def _adversarial_inputs(root: Path, samples: Path) -> tuple[Path, dict[str, str]]:
    """A manifest folder full of traps plus one good call and one good chat file; returns
    (manifest, expected reason per call_id; None = ok)."""
    calls = root / "calls"
    calls.mkdir(parents=True)
    stereo, _ = load_audio(samples / "calls" / "stereo_call_8k.wav")
    write_audio(calls / "good.wav", stereo[:, : 16000 * 6], 16000)
    (calls / "zero.wav").write_bytes(b"")
    huge_claim_wav(calls / "huge_claim.wav")
    ten_hour_wav(calls / "ten_hours.wav")
    ten_hour_mp3(calls / "ten_hours.mp3")
    write_audio(calls / "mp3_as_wav.mp3", stereo[:, : 16000 * 6], 16000).rename(calls / "mp3_as_wav.wav")
    (calls / "text.mp3").write_text("这不是音频文件\n" * 40, encoding="utf-8")
    (calls / "image.wav").write_bytes(PNG_1PX)
    (calls / "playlist.wav").write_text("#EXTM3U\n#EXTINF:10,\n/etc/passwd\n#EXT-X-ENDLIST\n")
    (calls / "a_folder.wav").mkdir()
    os.mkfifo(calls / "fifo.wav")
    (calls / "escape.wav").symlink_to("/etc/passwd")
    (calls / "to_dev_zero.wav").symlink_to("/dev/zero")
    outside = root.parent / f"{root.name}_outside.wav"
    shutil.copy(calls / "good.wav", outside)
    rows = {
        "good": ("calls/good.wav", None),
        "zero": ("calls/zero.wav", Reason.EMPTY_FILE),
        "huge_claim": ("calls/huge_claim.wav", Reason.BAD_HEADER),
        "ten_hours_wav": ("calls/ten_hours.wav", Reason.TOO_LONG),
        "ten_hours_mp3": ("calls/ten_hours.mp3", Reason.TOO_LONG),
        "mp3_as_wav": ("calls/mp3_as_wav.wav", None),  # an mp3 named .wav is just audio
        "text_as_mp3": ("calls/text.mp3", Reason.NOT_AUDIO),
        "png_as_wav": ("calls/image.wav", Reason.NO_AUDIO_STREAM),
        "playlist": ("calls/playlist.wav", Reason.NOT_AUDIO),
        "dotdot": ("../../etc/passwd", Reason.PATH_OUTSIDE_ROOT),
        "absolute_outside": (str(outside), Reason.PATH_OUTSIDE_ROOT),
        "absolute_inside": (str(calls / "zero.wav"), Reason.EMPTY_FILE),
        "symlink_out": ("calls/escape.wav", Reason.PATH_OUTSIDE_ROOT),
        "symlink_dev": ("calls/to_dev_zero.wav", Reason.PATH_OUTSIDE_ROOT),
        "dev_zero": ("/dev/zero", Reason.PATH_OUTSIDE_ROOT),
        "dev_urandom": ("/dev/urandom", Reason.PATH_OUTSIDE_ROOT),
        "nul": ("calls/go\x00od.wav", Reason.PATH_OUTSIDE_ROOT),
        "long_path": ("calls/" + "a" * 5000 + ".wav", Reason.PATH_OUTSIDE_ROOT),
        "long_component": ("calls/" + "b" * 300 + ".wav", Reason.FILE_NOT_FOUND),
        "directory": ("calls/a_folder.wav", Reason.NOT_A_FILE),
        "folder_itself": (".", Reason.PATH_OUTSIDE_ROOT),
        "fifo": ("calls/fifo.wav", Reason.NOT_A_FILE),
        "missing": ("calls/nope.wav", Reason.FILE_NOT_FOUND),
    }
    manifest = root / "manifest.jsonl"
    lines = [json.dumps({"call_id": cid, "path": p}) for cid, (p, _) in rows.items()]
    lines.append(json.dumps({"call_id": "good", "path": "calls/zero.wav"}))  # duplicate id: first wins
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest, {cid: r for cid, (_, r) in rows.items()}


def _chat_traps(root: Path) -> dict[str, str]:
    """Chat JSONL with a 17 MB line, a 100k-turn session, a non-UTF-8 line and a good session."""
    good = {"dialogue_id": "chat_ok", "turns": [{"role": "agent", "text": "您好"}, {"role": "customer", "text": "在吗"}]}
    many = {"dialogue_id": "chat_100k", "turns": [{"role": "agent", "text": "好"}] * 100_000}
    with open(root / "traps.jsonl", "wb") as fh:
        fh.write(json.dumps(good, ensure_ascii=False).encode() + b"\n")
        fh.write(b'{"dialogue_id": "huge", "turns": [{"role": "agent", "text": "' + b"x" * (17 << 20) + b'"}]}\n')
        fh.write(json.dumps(many).encode() + b"\n")
        fh.write('{"dialogue_id": "gbk", "turns": [{"role": "agent", "text": "您好"}]}'.encode("gbk") + b"\n")
    return {"chat_ok": None, "traps:2": Reason.INPUT_TOO_LARGE, "chat_100k": Reason.INPUT_TOO_LARGE,
            "traps:4": Reason.BAD_CHAT_SESSION}


@pytest.mark.model
def test_adversarial_inputs_are_error_rows_and_the_batch_goes_on(tmp_path, samples, whisper_base):
    from qc_pipeline.runner import run_batch

    manifest, expected = _adversarial_inputs(tmp_path / "m", samples)
    expected.update(_chat_traps(tmp_path / "m"))
    out = tmp_path / "out"
    t0 = time.perf_counter()
    stats = run_batch([str(manifest), str(tmp_path / "m" / "traps.jsonl")], str(out), CFG, workers=1)
    elapsed = time.perf_counter() - t0
    rows = check_output(out, set(expected))
    assert stats.duplicates == 1
    got = {cid: (r["error_reason"] if r["status"] == "failed" else None) for cid, r in rows.items()}
    assert got == expected
    assert rows["mp3_as_wav"]["codec"] == "mp3float"  # detected by content, not by name
    assert rows["good"]["status"] == "ok" and rows["good"]["n_utterances"] > 0
    assert rows["chat_ok"]["status"] == "ok"
    assert all(r["error_detail"] for r in rows.values() if r["status"] == "failed")
    assert elapsed < 120


def test_manifest_traps_at_read_time(tmp_path):
    from qc_pipeline.inputs import discover

    (tmp_path / "gbk.csv").write_bytes("call_id,path\n通话1,录音1.wav\n".encode("gbk"))
    (tmp_path / "nohdr.csv").write_text("call_id,file\nc1,a.wav\n", encoding="utf-8")
    (tmp_path / "ok.csv").write_text("call_id,path\nfine,fine.wav\n", encoding="utf-8")
    found = discover([str(tmp_path / "gbk.csv"), str(tmp_path / "nohdr.csv"), str(tmp_path / "ok.csv")])
    assert [s.call_id for s in found.sources] == ["fine"]  # the good manifest still counts
    skipped = {Path(s.input).name: (s.reason, s.detail) for s in found.skipped}
    assert skipped["gbk.csv"][0] == Reason.BAD_MANIFEST and "save the manifest as UTF-8" in skipped["gbk.csv"][1]
    assert skipped["nohdr.csv"][0] == Reason.BAD_MANIFEST and "'path' column" in skipped["nohdr.csv"][1]
    (tmp_path / "short.csv").write_text("path,call_id\na.wav\n\"b.wav\nc.wav\n", encoding="utf-8")
    sources = discover([str(tmp_path / "short.csv")]).sources  # short row and an unterminated quote
    assert [s.call_id for s in sources][0] == "a"
    (tmp_path / "bigfield.csv").write_text("path\n" + "x" * 200_000 + "\nok.wav\n", encoding="utf-8")
    sources = discover([str(tmp_path / "bigfield.csv")]).sources
    assert sources[0].input_error[0] == Reason.BAD_MANIFEST_ROW and sources[-1].call_id == "ok"


def test_undecodable_names_and_broken_unicode_are_stored_and_resumed(tmp_path):
    """A GBK file name on a Linux mount and a chat with a lone surrogate (half an emoji) must not abort
    the flush; the stored ids are stable, so a re-run skips them instead of failing or duplicating."""
    from qc_pipeline.runner import run_batch

    inp = tmp_path / "in"
    inp.mkdir()
    gbk_name = "客服通话".encode("gbk") + b".wav"              # not valid UTF-8
    with open(os.path.join(os.fsencode(inp), gbk_name), "wb"):  # empty: an error row, no model needed
        pass
    chat = {"dialogue_id": "half-emoji-\ud83d", "turns": [{"role": "customer", "text": "你好\ud83d"},
                                                          {"role": "agent", "text": "您好，请问有什么可以帮您"}]}
    (inp / "chats.jsonl").write_text(json.dumps(chat) + "\n", encoding="utf-8")  # json escapes the surrogate
    cfg = load_config(overrides=("run.progress=false",))
    first = run_batch([str(inp)], str(tmp_path / "out"), cfg, workers=1)
    assert first.ok == 1 and dict(first.failed) == {"empty_file": 1}
    rows = read_table(tmp_path / "out", "sessions").to_pylist()
    ids = sorted(r["call_id"] for r in rows)
    assert len(ids) == 2 and all(i.encode("utf-8") for i in ids)
    assert any(i.startswith("half-emoji-") for i in ids) and any("\ufffd" in i for i in ids)
    text = [r["text"] for r in read_table(tmp_path / "out", "utterances").to_pylist()]
    assert "你好?" in text  # the lone surrogate became a replacement mark; the rest of the turn is kept
    again = run_batch([str(inp)], str(tmp_path / "out"), cfg, workers=1)
    assert again.skipped_done == 2 and len(read_table(tmp_path / "out", "sessions")) == 2


class HangOnPoison(Stage):
    """Test stage: a call whose id starts with 'hang' never returns (a decoder livelock, say)."""

    name = "hang"
    kinds = ("chat",)

    def process(self, record):
        if record.source.call_id.startswith("hang"):
            time.sleep(3600)
        return record


def hang_stages(cfg):
    from qc_pipeline.stages.chat import ChatStage

    return [HangOnPoison(), ChatStage()]


def test_a_hung_call_is_killed_after_the_timeout_and_the_rest_finish(caplog):
    from qc_pipeline.executors.pool import WorkerPool

    cfg = load_config(overrides=("run.progress=false", "run.call_timeout_s=3"))
    sources = [_chat(f"c{i}") for i in range(4)] + [_chat("hang_1")] + [_chat(f"d{i}") for i in range(4)]
    results = []
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="qc_pipeline.executors.pool"):
        WorkerPool(cfg, 2, results.append, build=hang_stages).run(sources)
    assert time.monotonic() - t0 < 60
    assert collections.Counter(r.call_id for r in results) == collections.Counter(s.call_id for s in sources)
    bad = [r for r in results if not r.ok]
    assert [(r.call_id, r.error_reason) for r in bad] == [("hang_1", Reason.CALL_TIMEOUT)]
    assert any("still running after 3 s" in r.getMessage() for r in caplog.records)
