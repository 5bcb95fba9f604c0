import json

from qc_pipeline.errors import Reason
from qc_pipeline.inputs import discover


def test_csv_manifest_rows_metadata_and_errors(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "call_id,path,agent_id,team,queue,started_at,channel_layout\n"
        "c1,a.wav,A7,billing,q1,2026-11-20T09:00:00+08:00,agent_right\n"
        "c2,,A7,billing,q1,,\n"
        "c3,../../etc/passwd,A7,billing,q1,,\n"
        "c4,a.wav,A7,billing,q1,,sideways\n", encoding="utf-8")
    found = discover([str(tmp_path / "m.csv")])
    sources, dups = found.sources, found.duplicates
    by_id = {s.call_id: s for s in sources}
    assert by_id["c1"].channel_layout == "agent_right" and by_id["c1"].team == "billing"
    assert by_id["c1"].path == str((tmp_path / "a.wav").resolve()) and by_id["c1"].input_error is None
    assert by_id["c2"].input_error[0] == Reason.BAD_MANIFEST_ROW
    assert by_id["c3"].input_error[0] == Reason.PATH_OUTSIDE_ROOT
    assert by_id["c4"].input_error[0] == Reason.BAD_MANIFEST_ROW and "sideways" in by_id["c4"].input_error[1]
    assert dups == []


def test_jsonl_manifest_bad_lines_become_error_rows(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"call_id": "x1", "path": "x.wav"}\n{not json\n[1,2]\n\n{"call_id": "x1", "path": "y.wav"}\n',
                 encoding="utf-8")
    found = discover([str(m)])
    sources, dups = found.sources, found.duplicates
    assert [s.call_id for s in sources] == ["x1", "m:2", "m:3"]
    assert sources[1].input_error[0] == Reason.BAD_MANIFEST_ROW
    assert sources[2].input_error[0] == Reason.BAD_MANIFEST_ROW
    assert [d.call_id for d in dups] == ["x1"]


def test_chat_sessions_in_shared_schema(tmp_path, samples):
    sources = discover([str(samples / "chats" / "jddc_3.jsonl")]).sources
    assert len(sources) == 3 and all(s.kind == "chat" for s in sources)
    first = sources[0]
    assert first.call_id.startswith("jddc_")
    assert {t.role for t in first.chat_turns} == {"agent", "customer"}


def test_chat_bad_sessions(tmp_path):
    f = tmp_path / "chats.jsonl"
    rows = [
        {"dialogue_id": "ok", "turns": [{"role": "客服", "text": "您好"}, {"role": "用户", "text": "在吗"}]},
        {"dialogue_id": "norole", "turns": [{"role": "robot", "text": "hi"}]},
        {"dialogue_id": "empty", "turns": []},
    ]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    sources = discover([str(f)]).sources
    by_id = {s.call_id: s for s in sources}
    assert [t.role for t in by_id["ok"].chat_turns] == ["agent", "customer"]
    assert by_id["norole"].input_error[0] == Reason.BAD_CHAT_SESSION
    assert by_id["empty"].input_error[0] == Reason.BAD_CHAT_SESSION


def test_folder_scan_ids_are_relative_paths(tmp_path):
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "通话 001.WAV").write_bytes(b"x")
    (tmp_path / "day2").mkdir()
    (tmp_path / "day2" / "通话 001.mp3").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("ignore me")
    sources = discover([str(tmp_path)]).sources
    assert sorted(s.call_id for s in sources) == ["day1/通话 001", "day2/通话 001"]


def test_caller_verified_from_manifest_and_chat(tmp_path):
    """Call metadata that switches the card's identity-check rule off (IVR-verified callers)."""
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "call_id,path,caller_verified\nv1,a.wav,true\nv2,a.wav,否\nv3,a.wav,\nv4,a.wav,maybe\n", encoding="utf-8")
    by_id = {s.call_id: s for s in discover([str(tmp_path / "m.csv")]).sources}
    assert [by_id[c].caller_verified for c in ("v1", "v2", "v3")] == [True, False, None]
    assert by_id["v4"].input_error[0] == Reason.BAD_MANIFEST_ROW and "caller_verified" in by_id["v4"].input_error[1]
    turns = [{"role": "agent", "text": "您好"}]
    f = tmp_path / "chats.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"dialogue_id": "c1", "caller_verified": False, "turns": turns},
        {"dialogue_id": "c2", "meta": {"caller_verified": "yes"}, "turns": turns},
        {"dialogue_id": "c3", "turns": turns},
    ]) + "\n", encoding="utf-8")
    by_id = {s.call_id: s for s in discover([str(f)]).sources}
    assert [by_id[c].caller_verified for c in ("c1", "c2", "c3")] == [False, True, None]
