"""Review app building blocks: review DB, accounts, audit chain, throttle, audio confinement, read model,
calibration, export, reports, CLI."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from qc_pipeline.errors import SetupError
from qc_pipeline.schema import SESSIONS, TABLES
from qc_pipeline.web.audio import resolve_audio
from qc_pipeline.web.audit import AuditLog
from qc_pipeline.web.calibration import calibrate, kappa
from qc_pipeline.web.db import ReviewDB, User, check_password_policy
from qc_pipeline.web.export import ExportOptions, export_cases
from qc_pipeline.web.queries import decode_cursor, encode_cursor
from qc_pipeline.web.readmodel import ReadModel
from qc_pipeline.web.reports import build_report, render_report
from qc_pipeline.web.routes import highlight
from qc_pipeline.web.testing import REPO, build_chat_results
from qc_pipeline.web.views import ListQuery, evidence_keywords, fmt_ts, local_time, parse_date

REV = User("rev", "reviewer")
PW = "long-pass-123"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return build_chat_results(tmp_path_factory.mktemp("chats"))


@pytest.fixture(scope="module")
def model(results, tmp_path_factory):
    m = ReadModel(results, tmp_path_factory.mktemp("rm") / "rm.duckdb")
    m.refresh()
    return m


# -- review db ---------------------------------------------------------------------------------------
def test_reviews_and_workflow_are_append_only(tmp_path):
    db = ReviewDB(tmp_path / "r.sqlite")
    rid = db.add_review(call_id="c1", item_id="greeting", action="override", machine_points=10, new_points=4,
                        comment="没问候", user=REV, run_id="r1")
    db.workflow_event("c1", "r1", "claim", REV)
    for sql in ("UPDATE reviews SET new_points=10 WHERE id=1", "DELETE FROM reviews", "UPDATE workflow SET user='x'",
                "DELETE FROM workflow"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.con.execute(sql)
    assert rid == 1 and ReviewDB(tmp_path / "r.sqlite").current("c1")["greeting"]["points"] == 4
    assert db.workflow_state("c1", "r1") == ("claimed", "rev") and db.workflow_state("c1", "r2") == ("pending", None)
    db.workflow_event("c1", "r1", "done", REV)
    assert db.workflow_states() == [("c1", "r1", "done", "rev")]


def test_database_files_are_0600(tmp_path):
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    db = ReviewDB(path)
    db.add_user("someone", PW, "reviewer")
    AuditLog(path).record(user="x", role="cli", action="t")
    for p in (path, *tmp_path.glob("r.sqlite-*"), tmp_path / "r.sqlite.audit-key"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_current_state_and_rerun(tmp_path):
    db = ReviewDB(tmp_path / "r.sqlite")
    agent = User("ag", "agent", "A1")
    add = functools.partial(db.add_review, comment="x", user=REV)
    add(call_id="c3", item_id="closing", action="override", machine_points=0, new_points=10, run_id="r1")
    add(call_id="c3", item_id="closing", action="appeal", machine_points=0, new_points=None, user=agent, run_id="r1")
    cur = db.current("c3", "r1")["closing"]
    assert cur["action"] == "appeal" and cur["points"] == 10  # an appeal keeps the reviewed points
    assert [a["call_id"] for a in db.pending_appeals()] == ["c3"]
    assert db.current("c3", "r2") == {}  # re-processed: the old verdicts judged other machine points
    assert [h["current_run"] for h in db.history("c3", "r2")] == [False, False]


def test_old_database_file_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE users (username TEXT PRIMARY KEY, role TEXT NOT NULL, agent_id TEXT,
            pw_salt BLOB NOT NULL, pw_hash BLOB NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE login_sessions (token_hash TEXT PRIMARY KEY, username TEXT NOT NULL REFERENCES users(username),
            csrf TEXT NOT NULL, expires_at TEXT NOT NULL);
        CREATE TABLE reviews (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, item_id TEXT NOT NULL,
            action TEXT NOT NULL, machine_points REAL, new_points REAL, comment TEXT NOT NULL DEFAULT '',
            user TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL);
        INSERT INTO reviews (call_id, item_id, action, machine_points, new_points, user, role, created_at)
            VALUES ('c1', 'greeting', 'confirm', 10, 10, 'rev', 'reviewer', '2026-01-01T00:00:00+00:00');""")
    con.commit()
    con.close()
    db = ReviewDB(path)
    assert db.current("c1", "r9")["greeting"]["points"] == 10  # before run tracking: counts for any run
    db.add_user("Alice", PW, "admin")
    with pytest.raises(SetupError, match="already exists"):
        db.add_user("ALICE", PW, "admin")


def test_login_sessions_idle_timeout_and_one_login_per_user(tmp_path, monkeypatch):
    import qc_pipeline.web.db as dbmod

    db = ReviewDB(tmp_path / "r.sqlite")
    user = db.add_user("rev", PW, "reviewer")
    first = db.create_session(user, "10.0.0.1")
    second = db.create_session(user, "10.0.0.2")
    assert db.get_session(first.token) is None and db.get_session(second.token)  # the new login ends the old
    now = dbmod._now()
    monkeypatch.setattr(dbmod, "_now", lambda: now + dbmod.IDLE_TIMEOUT - dt.timedelta(seconds=5))
    assert db.get_session(second.token)  # still within the idle time; last_seen moves on
    monkeypatch.setattr(dbmod, "_now", lambda: now + 2 * dbmod.IDLE_TIMEOUT - dt.timedelta(seconds=10))
    assert db.get_session(second.token)
    monkeypatch.setattr(dbmod, "_now", lambda: now + 4 * dbmod.IDLE_TIMEOUT)
    assert db.get_session(second.token) is None
    assert db.con.execute("SELECT COUNT(*) FROM login_sessions").fetchone()[0] == 0


def test_accounts_disable_role_reset(tmp_path):
    db = ReviewDB(tmp_path / "r.sqlite")
    u = db.add_user("Wang", PW, "agent", "A1001")
    assert db.check_password("wang", PW) == u  # case-insensitive name
    s = db.create_session(u)
    db.set_disabled("WANG", True)
    assert db.check_password("wang", PW) is None and db.get_session(s.token) is None
    db.set_disabled("wang", False)
    s = db.create_session(u)
    assert db.set_role("wang", "reviewer").agent_id is None and db.get_session(s.token) is None
    with pytest.raises(SetupError, match="at least 10"):
        db.reset_password("wang", "12345678")
    db.reset_password("wang", "brand-new-77")
    assert db.check_password("wang", PW) is None and db.check_password("wang", "brand-new-77").role == "reviewer"
    with pytest.raises(SetupError, match="no user"):
        db.user("nobody")
    raw = db.con.execute("SELECT pw_hash FROM users").fetchone()[0]
    assert b"brand-new" not in raw


@pytest.mark.parametrize("pw", ["12345678", "1234567890", "abcdefghijk", "aaaaaaaaaa1", "password123", "zhangsan-2026"])
def test_password_policy_refuses(pw):
    with pytest.raises(SetupError):
        check_password_policy("zhangsan", pw)


@pytest.mark.parametrize("pw", ["correct-horse-9", "s3cret-pass", "质检员的密码是2026", "Tr0ub4dor&3x"])
def test_password_policy_accepts(pw):
    check_password_policy("zhangsan", pw)


# -- audit chain -------------------------------------------------------------------------------------
def test_audit_chain_detects_tampering(tmp_path):
    path = tmp_path / "r.sqlite"
    audit = AuditLog(path)
    for i in range(5):
        audit.record(user="rev", role="reviewer", action="view_session", call_id=f"c{i}", address="10.0.0.1")
    v = audit.verify()
    assert v.ok and v.n_rows == 5 and v.head_id == 5
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit SET user='someone' WHERE id=2")
    con.execute("DROP TRIGGER audit_no_update")  # whoever has the file can drop the triggers ...
    con.execute("UPDATE audit SET call_id='other' WHERE id=2")
    con.commit()
    v = audit.verify()  # ... but not forge the chain without the key
    assert not v.ok and any("row 2: contents changed" in p for p in v.problems)
    con.execute("UPDATE audit SET call_id='c1' WHERE id=2")
    con.execute("DROP TRIGGER audit_no_delete")
    con.execute("DELETE FROM audit WHERE id=5")
    con.commit()
    v = audit.verify()
    assert not v.ok and any("deleted from the end" in p for p in v.problems)
    con.execute("DELETE FROM audit WHERE id=3")
    con.commit()
    assert any("missing" in p for p in audit.verify().problems)


# -- throttle ----------------------------------------------------------------------------------------
def test_login_throttle_per_user_and_address_with_backoff(monkeypatch):
    import qc_pipeline.web.access as access

    clock = [1000.0]
    monkeypatch.setattr(access.time, "monotonic", lambda: clock[0])
    t = access.LoginThrottle(max_failures=5, window_s=300, lock_s=300, max_lock_s=1200, address_failures=50)
    assert [t.try_acquire("u", "a1") for _ in range(7)] == [True] * 5 + [False] * 2  # pending checks count
    t.release("u", "a1")
    assert t.try_acquire("u", "a1") and not t.try_acquire("u", "a1")
    for _ in range(5):
        t.failed("u", "a1")
    assert t.locked("u", "a1") and not t.locked("u", "a2") and not t.locked("U", "a9")  # others unaffected
    assert t.locked("U", "a1")  # the name is case-insensitive
    clock[0] += 301
    assert not t.locked("u", "a1")
    for _ in range(5):  # a second lock-out from the same address lasts twice as long
        assert t.try_acquire("u", "a1")
        t.failed("u", "a1")
    assert 599 <= t.retry_after("u", "a1") <= 600
    for _ in range(3):
        clock[0] += 1300
        for _ in range(5):
            assert t.try_acquire("u", "a1")
            t.failed("u", "a1")
    assert t.retry_after("u", "a1") == pytest.approx(1200)  # capped


def test_login_throttle_address_spray_and_memory_bound(monkeypatch):
    import qc_pipeline.web.access as access

    clock = [1000.0]
    monkeypatch.setattr(access.time, "monotonic", lambda: clock[0])
    t = access.LoginThrottle(max_failures=5, window_s=300, lock_s=300, address_failures=20)
    for n in range(20):
        assert t.try_acquire(f"name{n}", "evil")
        t.failed(f"name{n}", "evil")
    assert not t.try_acquire("admin", "evil") and t.try_acquire("admin", "office")  # the address, not the name
    t.succeeded("admin", "office")
    for n in range(1000):  # a spray over addresses: expired entries are dropped on every call
        addr = f"10.0.{n // 256}.{n % 256}"
        assert t.try_acquire(f"n{n}" + "x" * 500, addr)
        t.failed(f"n{n}" + "x" * 500, addr)
        clock[0] += 1
    assert len(t) <= 320 and all(len(k[0]) <= 65 for k in t._entries)


# -- audio -------------------------------------------------------------------------------------------
def test_resolve_audio_stays_under_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "ok.wav").write_bytes(b"RIFF")
    (outside / "secret.wav").write_bytes(b"RIFF")
    (root / "link.wav").symlink_to(outside / "secret.wav")
    assert resolve_audio(str(root / "ok.wav"), [root]) == (root / "ok.wav").resolve()
    assert resolve_audio(str(root / ".." / "outside" / "secret.wav"), [root]) is None
    assert resolve_audio(str(root / "link.wav"), [root]) is None
    assert resolve_audio(str(outside / "secret.wav"), [root]) is None
    assert resolve_audio(str(root / "missing.wav"), [root]) is None
    assert resolve_audio(str(root), [root]) is None  # a folder is not a file
    assert resolve_audio(str(outside / "secret.wav"), [root, outside]) is not None


# -- read model --------------------------------------------------------------------------------------
def test_read_model_joins_stored_flags_and_sorts(model):
    rude = model.session("own-rude-w0")
    assert rude.total is not None and rude.total < 60 and "low_score" in rude.reasons
    assert "attitude" in rude.failed_items and rude.items and rude.started_at.utcoffset() is not None
    assert model.get("own-good-w0").reasons == ()
    page = model.page(ListQuery(flagged_only=True, per_page=500))
    assert page.rows and all(s.reasons for s in page.rows)
    totals = [s.total for s in page.rows]
    assert totals == sorted(totals)  # worst first
    week2 = model.sessions(ListQuery(date_from=dt.date(2026, 10, 12), date_to=dt.date(2026, 10, 12)))
    assert {s.call_id for s in week2 if s.call_id.startswith("own-")} == {"own-good-w1", "own-rude-w1",
                                                                          "own-silent-w1"}
    by_time = model.page(ListQuery(sort="time", desc=True, per_page=500)).rows
    assert [s.started_at for s in by_time] == sorted((s.started_at for s in by_time), reverse=True)


def test_keyset_pages_walk_every_row_once(model):
    q = ListQuery(sort="agent", per_page=7)
    page, seen = model.page(q), []
    seen += [s.call_id for s in page.rows]
    while page.next:
        page = model.page(ListQuery(sort="agent", per_page=7, after=page.next))
        seen += [s.call_id for s in page.rows]
    assert len(seen) == len(set(seen)) == page.total and page.page == page.n_pages
    back = model.page(ListQuery(sort="agent", per_page=7, before=page.prev))
    assert back.page == page.n_pages - 1 and back.rows[-1].call_id == seen[-len(page.rows) - 1]
    last = model.page(ListQuery(sort="agent", per_page=7, last=True))
    assert last.next is None and last.rows[-1].call_id == seen[-1]
    assert model.page(ListQuery(sort="agent", per_page=7, page=10 ** 6)).next is None  # past the end: last page
    assert decode_cursor(encode_cursor(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "c"))[1] == "c"
    with pytest.raises(ValueError):
        decode_cursor("not-a-cursor")


def _copy(results, tmp_path):
    return shutil.copytree(results, tmp_path / "r", ignore=shutil.ignore_patterns("_review"))


def test_rerun_row_wins_and_refresh_is_incremental(results, tmp_path):
    copy = _copy(results, tmp_path)
    m = ReadModel(copy, tmp_path / "rm.duckdb")
    assert m.refresh() > 0 and m.refresh() == 0  # nothing new: nothing re-read
    assert m.get("own-good-w0").team == "billing"
    part = sorted((copy / "sessions").glob("run_date=*/part-*.parquet"))[0]
    row = next(r for r in pq.read_table(part, schema=SESSIONS).to_pylist() if r["call_id"] == "own-good-w0")
    newer = {**row, "team": "moved", "run_id": "rerun", "processed_at": row["processed_at"] + dt.timedelta(hours=1)}
    pq.write_table(pa.Table.from_pylist([newer], schema=SESSIONS), part.parent / "part-rerun-00000.parquet")
    assert m.refresh() == 1
    s = m.session("own-good-w0")
    assert s.team == "moved" and s.total is None and s.items == ()  # never mixed with the old run's scores
    (part.parent / "part-rerun-00000.parquet").unlink()  # a part that vanished (e.g. compacted away)
    assert m.refresh() == 1 and m.get("own-good-w0").team == "billing"
    m.close()
    reopened = ReadModel(copy, tmp_path / "rm.duckdb")  # the model file is kept: a restart reads nothing again
    assert reopened.refresh() == 0 and reopened.get("own-good-w0").total is not None


def test_read_model_and_sink_pick_the_same_latest_row(results, tmp_path):
    """The review app's current row is the one read_table(latest=True) keeps: newest processed_at, a tie
    going to the later part, a later part with an older row losing."""
    from qc_pipeline.sinks.parquet import read_table

    copy = _copy(results, tmp_path)
    part = sorted((copy / "sessions").glob("run_date=*/part-*.parquet"))[0]
    a, b = pq.read_table(part, schema=SESSIONS).to_pylist()[:2]
    tie = {**a, "run_id": "tie"}                                                   # same processed_at
    older = {**b, "run_id": "older", "processed_at": b["processed_at"] - dt.timedelta(hours=1)}
    for row in (tie, older):
        pq.write_table(pa.Table.from_pylist([row], schema=SESSIONS), part.parent / f"part-zz-{row['run_id']}-0.parquet")
    m = ReadModel(copy, tmp_path / "rm.duckdb")
    m.refresh()
    sink = {r["call_id"]: r["run_id"] for r in read_table(copy, "sessions", latest=True).to_pylist()}
    assert (sink[a["call_id"]], sink[b["call_id"]]) == ("tie", b["run_id"])
    assert {cid: m.get(cid).run_id for cid in sink} == sink


def test_read_model_tolerates_newer_schemas_and_bad_parts(results, tmp_path):
    """started_at as a timestamp, drops/stage_seconds as maps, utterances.low_confidence, no item_results
    twin, an unreadable part: all read by column name, nothing fatal."""
    copy = _copy(results, tmp_path)
    part = sorted((copy / "sessions").glob("run_date=*/part-*.parquet"))[0]
    base = pq.read_table(part, schema=SESSIONS).to_pylist()[0]
    new_sessions = pa.schema([f for f in SESSIONS if f.name not in ("started_at", "drops", "stage_seconds")] + [
        pa.field("started_at", pa.timestamp("ms", tz="UTC")), pa.field("drops", pa.map_(pa.string(), pa.int64())),
        pa.field("stage_seconds", pa.map_(pa.string(), pa.float64()))])
    row = {**base, "call_id": "newschema-1", "run_id": "new", "flags": ["low_asr_confidence"],
           "started_at": dt.datetime(2026, 10, 30, 2, 0, tzinfo=dt.timezone.utc), "drops": [("vad", 2)],
           "stage_seconds": [("asr", 1.5)]}
    utt = TABLES["utterances"]   # schema 2 has low_confidence; older parts (the fixture's) may not
    if "low_confidence" not in utt.names:
        utt = pa.schema(list(utt) + [pa.field("low_confidence", pa.bool_())])
    pq.write_table(pa.Table.from_pylist([{"call_id": "newschema-1", "turn_index": 0, "role": "agent", "channel": 0,
                                          "start": 0.0, "end": 1.0, "text": "您好", "run_id": "new",
                                          "low_confidence": True}], schema=utt),
                   copy / "utterances" / part.parent.name / "part-new-00000.parquet")
    pq.write_table(pa.Table.from_pylist([row], schema=new_sessions), part.parent / "part-new-00000.parquet")
    (part.parent / "part-zz-broken.parquet").write_bytes(b"PAR1 not really")
    m = ReadModel(copy, tmp_path / "rm.duckdb")
    m.refresh()
    s = m.session("newschema-1")
    assert s.reasons == ("low_asr_confidence",) and s.items == ()
    assert s.started_at == dt.datetime(2026, 10, 30, 2, 0, tzinfo=dt.timezone.utc)
    assert m.sessions(ListQuery(date_from=dt.date(2026, 10, 30), date_to=dt.date(2026, 10, 30), q="newschema"))
    assert m.utterances(s)[0]["low_confidence"] is True
    assert m.get("own-good-w0").total is not None  # the old-schema parts still read
    assert m.page(ListQuery(text="您好", q="newschema")).total == 1


def test_html_helpers():
    assert highlight("<b>您好</b>，欢迎", ["您好"]) == "&lt;b&gt;<mark>您好</mark>&lt;/b&gt;，欢迎"
    assert evidence_keywords("申请、取消 | 我申请下取消订单") == ["申请", "取消"]
    assert evidence_keywords("emotion=30 | 没有") == []
    assert fmt_ts(75.4) == "01:15" and fmt_ts(3725) == "1:02:05" and fmt_ts(None) == ""
    assert local_time("2026-10-05T02:00:00+00:00") == "2026-10-05 10:00"          # Asia/Shanghai by default
    assert local_time("2026-10-05T02:00:00+00:00", "Europe/Berlin") == "2026-10-05 04:00"
    assert parse_date("2026-10-05") == dt.date(2026, 10, 5) and parse_date("") is None
    for bad in ("2026-02-30", "next-week", "2026-1-5"):
        with pytest.raises(ValueError, match="not a date"):
            parse_date(bad)


# -- calibration -------------------------------------------------------------------------------------
def test_kappa_and_calibration():
    assert kappa([(1, 1), (0, 0), (1, 0), (0, 1)]) == 0.0
    assert kappa([(1, 1), (0, 0)]) == 1.0 and kappa([(1, 1)]) is None and kappa([]) is None
    v = lambda call, user, action, machine, new: {"call_id": call, "item_id": "g", "run_id": "r", "user": user,  # noqa
                                                   "action": action, "machine_points": machine, "new_points": new}
    verdicts = [v("c1", "a", "confirm", 10, 10), v("c1", "b", "override", 10, 5),
                v("c2", "a", "override", 0, 10), v("c2", "b", "override", 0, 10),
                v("c3", "a", "confirm", 10, 10), v("old", "a", "confirm", 10, 10)]
    cal = calibrate(verdicts, {"c1": "r", "c2": "r", "c3": "r"})  # "old" is no longer in the results
    g = cal["items"][0]
    assert g["n_reviewed"] == 5 and g["n_override"] == 3 and g["n_double"] == 2
    assert g["agreement_reviewers"] == 0.5 and g["agreement"] == 0.4
    assert {r["user"]: r["n_double"] for r in cal["reviewers"]} == {"a": 2, "b": 2}
    assert cal["overall"]["n_double"] == 2 and cal["overall"]["kappa_reviewers"] is not None


# -- export & reports --------------------------------------------------------------------------------
def test_export_csv_xlsx_html(model, tmp_path):
    res = export_cases(model, tmp_path / "csv", ExportOptions(team="billing", fmt="csv"))
    assert res.files and all(p.name.startswith("coaching_A100") for p in res.files)
    rows = list(csv.DictReader(io.StringIO(res.files[0].read_text("utf-8-sig"))))
    assert rows and all(float(r["总分"]) < 60 and r["班组"] == "billing" for r in rows)  # default: below pass mark
    assert any(r["质检项ID"] == "attitude" and "态度" in r["证据原话"] for r in rows)
    x = export_cases(model, tmp_path / "x", ExportOptions(below=60, agent_id="A1001", fmt="xlsx"))
    wb = load_workbook(x.files[0])
    assert wb.sheetnames == ["概览", "案例"] and wb["概览"]["B1"].value == "A1001"
    assert wb["案例"].max_row - 1 == x.n_rows
    h = export_cases(model, tmp_path / "h", ExportOptions(agent_id="A1002", fmt="html"))
    page = h.files[0].read_text("utf-8")
    assert 'lang="zh-CN"' in page and "own-rude" in page and "<script" not in page
    with pytest.raises(SetupError, match="no scored session below 1"):
        export_cases(model, tmp_path, ExportOptions(below=1, fmt="csv"))


def test_export_html_audio_clip_fragment(tmp_path):
    from qc_pipeline.web.export import _write_html
    from qc_pipeline.web.views import ItemView, SessionView

    wav = REPO / "samples" / "calls" / "stereo_call_8k.wav"
    s = SessionView(call_id="c/1", kind="audio", source_path=str(wav), agent_id="A1", team="t", queue=None,
                    started_at=dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.timezone.utc), status="ok", error_reason=None,
                    duration_s=60, role_confidence=1, run_id="r", total=40, grade="D",
                    items=(ItemView("greeting", "问候语", "graded", 0, 10, True, False,
                                    ({"turn_index": 0, "start": 1.5, "end": 6.25, "text": "您好 | 您好<x>",
                                      "rule_id": "g", "role": "agent"},)),))
    _write_html(tmp_path / "p.html", "A1", [s], tmp_path, copy_audio=True)
    page = (tmp_path / "p.html").read_text("utf-8")
    clip = next((tmp_path / "audio").glob("c_1-*.wav"))  # "c/1" sanitised, plus a hash that keeps it unique
    assert f'src="audio/{clip.name}#t=1.50,6.25"' in page and "您好&lt;x&gt;" in page and "00:01–00:06" in page
    assert "2026-11-02 09:00" in page  # shown in Asia/Shanghai
    assert clip.read_bytes() == wav.read_bytes()


def test_reports_levels(model):
    center = build_report(*model.weekly("center", ListQuery()), "center")
    scored = [s for s in model.sessions(ListQuery()) if s.total is not None]
    assert [s["key"] for s in center["series"]] == ["center"] and center["n_sessions"] == len(scored)
    assert center["weeks"] == sorted(center["weeks"]) and len(center["weeks"]) >= 4
    assert center["series"][0]["below"] == sum(1 for s in scored if not s.passed)
    team = build_report(*model.weekly("team", ListQuery()), "team")
    assert {s["key"] for s in team["series"]} == {"billing", "logistics"}
    agent = build_report(*model.weekly("agent", ListQuery()), "agent")
    a = next(s for s in agent["series"] if s["key"] == "A1001")
    mine = [x.total for x in scored if x.agent_id == "A1001"]
    assert a["n"] == len(mine) and a["mean"] == pytest.approx(sum(mine) / len(mine), abs=0.01)
    att = next(i for i in center["items"] if i["item_id"] == "attitude")
    assert all(0 <= w["pass_rate"] <= 1 for w in att["weeks"])
    page = render_report([center, team], title="t")
    assert page.count("<svg") == 4 and "<polyline" in page


def test_report_weeks_include_gaps():
    from qc_pipeline.web.reports import _week_range

    assert _week_range(["2026-W41", "2026-W44"]) == ["2026-W41", "2026-W42", "2026-W43", "2026-W44"]
    assert _week_range(["2026-W01", "2025-W52"]) == ["2025-W52", "2026-W01"]
    assert _week_range([]) == []


def test_spreadsheet_cells_never_run_as_formulas_and_names_stay_apart():
    from qc_pipeline.web.export import _cell, _safe_name

    assert _cell('=HYPERLINK("http://evil","点我")') == '\'=HYPERLINK("http://evil","点我")'
    assert [_cell(v) for v in ("+1", "-2", "@x", "好的", 3.5, None)] == ["'+1", "'-2", "'@x", "好的", 3.5, None]
    assert _safe_name("call_1") == "call_1" and _safe_name("call/1") != _safe_name("call_1")


# -- CLI ---------------------------------------------------------------------------------------------
def _cli(*args, stdin: str = ""):
    return subprocess.run([sys.executable, "-m", "qc_pipeline", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, timeout=180)


def test_cli_users_audit_export_report(results, tmp_path):
    db = tmp_path / "db.sqlite"
    p = _cli("users", "add", "qa1", "--role", "reviewer", "--db", str(db), "--password-stdin", stdin="s3cret-pass\n")
    assert p.returncode == 0, p.stderr
    assert ReviewDB(db).check_password("QA1", "s3cret-pass") == User("qa1", "reviewer")
    assert _cli("users", "list", "--db", str(db)).stdout.strip() == "qa1\treviewer\t\tactive\t0"
    weak = _cli("users", "add", "qa2", "--role", "reviewer", "--db", str(db), stdin="12345678\n")
    assert weak.returncode == 2 and "at least 10" in weak.stderr
    assert _cli("users", "disable", "qa1", "--db", str(db)).returncode == 0
    assert ReviewDB(db).check_password("qa1", "s3cret-pass") is None
    assert _cli("users", "reset", "qa1", "--db", str(db), stdin="fresh-pass-88\n").returncode == 0
    assert _cli("users", "enable", "qa1", "--db", str(db)).returncode == 0
    assert ReviewDB(db).check_password("qa1", "fresh-pass-88") is not None
    bad = _cli("users", "add", "ag", "--role", "agent", "--db", str(db), stdin="s3cret-pass\n")
    assert bad.returncode == 2 and "--agent-id" in bad.stderr
    p = _cli("export", "--results", str(results), "--db", str(db), "--team", "logistics", "--format", "csv",
             "--out", str(tmp_path / "exp"))
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path / "exp").iterdir()) == ["coaching_A2001.csv"]
    none = _cli("export", "--results", str(results), "--db", str(db), "--below", "0", "--format", "csv",
                "--out", str(tmp_path / "e"))
    assert none.returncode == 2 and "loosen" in none.stderr
    missing = _cli("export", "--results", str(tmp_path / "nope"), "--format", "csv", "--out", str(tmp_path / "e"))
    assert missing.returncode == 2 and "no sessions/ folder" in missing.stderr
    assert _cli("export", "--results", str(results), "--db", str(db), "--since", "2026-02-30", "--format", "csv",
                "--out", str(tmp_path / "e")).returncode == 2
    p = _cli("report", "--results", str(results), "--db", str(db), "--out", str(tmp_path / "rep.html"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "rep.html").read_text("utf-8").count("<svg") == 6
    v = _cli("audit", "verify", "--db", str(db))
    assert v.returncode == 0 and v.stdout.startswith("OK: ")
    out = tmp_path / "audit.jsonl"
    assert _cli("audit", "export", "--db", str(db), "--since", "2020-01-01", "--out", str(out)).returncode == 0
    actions = [json.loads(line)["action"] for line in out.read_text("utf-8").splitlines()]
    assert actions[:5] == ["user_add", "user_disable", "user_reset", "user_enable", "export_cli"]
    assert "report_cli" in actions
    assert _cli("audit", "export", "--db", str(db), "--since", "2999-01-01").stdout == ""
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET user='nobody' WHERE id=1")
    con.commit()
    t = _cli("audit", "verify", "--db", str(db))
    assert t.returncode == 1 and t.stdout.startswith("TAMPERED") and "row 1" in t.stdout
