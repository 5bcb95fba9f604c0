"""Fuzz the manifest (CSV/JSONL) and chat-JSONL readers (issue #6).

For arbitrary bytes, text and JSON values a reader either yields CallSource objects (valid, or
carrying ``input_error`` with a known reason) or lists a whole-file problem in ``skipped``;
never another exception, never a hang.  Ids are non-empty and deterministic, and no path
leaves the manifest's folder.  Derandomized so CI sees the same examples every time.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc_pipeline.errors import Reason
from qc_pipeline.inputs import chat_to_source, discover, manifest_row_to_source
from qc_pipeline.records import CallSource

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_ROOT = Path(tempfile.mkdtemp(prefix="qc-fuzz-"))
atexit.register(shutil.rmtree, _ROOT, True)
(_ROOT / "m" / "calls").mkdir(parents=True)
(_ROOT / "m" / "calls" / "a.wav").write_bytes(b"RIFF")
os.symlink("/etc", _ROOT / "m" / "calls" / "etc_link")
(_ROOT / "outside.wav").touch()  # "outside": the manifests below live in _ROOT / "m"

PATHY = st.sampled_from(["a.wav", "calls/a.wav", "../x.wav", "../../etc/passwd", "/etc/passwd", "/dev/zero",
                         "calls/etc_link/passwd", "calls/../../x", ".", "..", "/", "", "~", "~root/x",
                         "calls/./a.wav", "c:\\x.wav", "calls\x00a.wav", "pipe:0", "concat:a|b", "a" * 5000,
                         str(_ROOT / "m" / "calls" / "a.wav"), str(_ROOT / "outside.wav")])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
JSON = st.recursive(SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                    st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                    max_leaves=12)
ROW = st.fixed_dictionaries({}, optional={
    "call_id": st.one_of(st.text(max_size=20), JSON), "path": st.one_of(PATHY, st.text(max_size=40), JSON),
    "channel_layout": st.one_of(st.sampled_from(["mono", "left", "RIGHT", "x", ""]), JSON),
    "agent_id": JSON, "team": JSON})
TURN = st.one_of(JSON, st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["agent", "客服", "用户", "bot"]), JSON),
                                              "text": st.one_of(st.text(max_size=20), JSON)},
                                             optional={"start": JSON, "end": JSON}))
SESSION = st.one_of(JSON, st.fixed_dictionaries({"turns": st.one_of(st.lists(TURN, max_size=5), JSON)},
                                                optional={"dialogue_id": JSON, "call_id": st.text(max_size=10),
                                                          "meta": JSON}))


def _check(sources: list[CallSource]) -> None:
    root = (_ROOT / "m").resolve()
    for s in sources:
        assert isinstance(s, CallSource)
        assert isinstance(s.call_id, str) and s.call_id.strip()
        if s.input_error is not None:
            assert s.input_error[0] in Reason.ALL and s.input_error[1]
        elif s.kind == "audio":
            assert s.path and Path(s.path).resolve().is_relative_to(root) and Path(s.path).resolve() != root
        else:
            assert s.chat_turns


def _discover(name: str, data: bytes) -> list[CallSource] | None:
    """discover() twice (determinism); None when the whole file was skipped (listed with its reason)."""
    path = _ROOT / "m" / name
    path.write_bytes(data)
    first = discover([str(path)])
    second = discover([str(path)])
    assert [s.call_id for s in first.sources] == [s.call_id for s in second.sources]
    _check(first.sources)
    if first.skipped:
        assert not first.sources and all(s.reason in Reason.ALL and s.detail for s in first.skipped)
        return None
    return first.sources


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_as_csv_jsonl(data):
    _discover("m.csv", data)
    _discover("m.jsonl", data)


@FUZZ
@given(st.lists(st.lists(st.one_of(PATHY, st.text(max_size=15)), min_size=1, max_size=4), max_size=6),
       st.sampled_from(["path,call_id,channel_layout", "call_id,path", "path", "path,path,x"]))
def test_csv_rows(rows, header):
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header.split(","))
    writer.writerows(rows)
    sources = _discover("rows.csv", buf.getvalue().encode("utf-8", "surrogatepass"))
    assert sources is not None  # a valid header is never a whole-file error


@FUZZ
@given(st.lists(st.one_of(ROW, JSON), max_size=6))
def test_jsonl_manifest_rows(rows):
    lines = [json.dumps(r, allow_nan=True) for r in rows if not isinstance(r, dict) or "turns" not in r]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    sources = _discover("rows.jsonl", data)
    assert sources is not None and len(sources) <= len(lines)


@FUZZ
@given(st.lists(SESSION, min_size=1, max_size=5))
def test_chat_jsonl(sessions):
    data = "\n".join(json.dumps(s) for s in sessions).encode("utf-8", "surrogatepass")
    path = _ROOT / "m" / "chats.jsonl"
    path.write_bytes(data)
    from qc_pipeline.inputs import read_jsonl

    sources = list(read_jsonl(path, kind="chat"))
    assert len(sources) == len(sessions)
    _check(sources)
    assert all(s.kind == "chat" for s in sources)


@FUZZ
@given(JSON, ROW)
def test_row_functions_never_raise(obj, row):
    _check([chat_to_source(obj, "f:1"), manifest_row_to_source(obj, _ROOT / "m", "f:1"),
            manifest_row_to_source(row, _ROOT / "m", "f:2")])
