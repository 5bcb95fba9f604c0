"""Review app building blocks: review DB, audio confinement, ranges, results join, export, reports, CLI."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import sqlite3
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from qc_pipeline.errors import SetupError
from qc_pipeline.schema import SESSIONS
from qc_pipeline.web.audio import parse_range, resolve_audio
from qc_pipeline.web.data import QueueFilter, ResultsStore, evidence_keywords, fmt_ts
from qc_pipeline.web.db import ReviewDB, User
from qc_pipeline.web.export import ExportOptions, export_cases
from qc_pipeline.web.pages import _highlight
from qc_pipeline.web.reports import build_report, render_report
from qc_pipeline.web.testing import REPO, build_chat_results

REV = User("rev", "reviewer")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return build_chat_results(tmp_path_factory.mktemp("chats"))


@pytest.fixture(scope="module")
def store(results):
    return ResultsStore(results)


# -- review db ---------------------------------------------------------------------------------------
def test_reviews_are_append_only(tmp_path):
    db = ReviewDB(tmp_path / "r.sqlite")
    rid = db.add_review(call_id="c1", item_id="greeting", action="override", machine_points=10, new_points=4,
                        comment="没问候", user=REV, run_id="r1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.con.execute("UPDATE reviews SET new_points=10 WHERE id=?", (rid,))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.con.execute("DELETE FROM reviews")
    assert [h["new_points"] for h in db.history("c1")] == [4]
    # durable: a new connection (new process in real life) sees the event
    assert ReviewDB(tmp_path / "r.sqlite").current("c1")["greeting"]["points"] == 4


def test_current_state_and_calibration(tmp_path):
    db = ReviewDB(tmp_path / "r.sqlite")
    agent = User("ag", "agent", "A1")
    add = functools.partial(db.add_review, run_id="r1")
    add(call_id="c1", item_id="greeting", action="confirm", machine_points=10, new_points=10, comment="", user=REV)
    add(call_id="c2", item_id="greeting", action="override", machine_points=10, new_points=4, comment="x", user=REV)
    add(call_id="c3", item_id="closing", action="override", machine_points=0, new_points=10, comment="x", user=REV)
    add(call_id="c3", item_id="closing", action="appeal", machine_points=0, new_points=None, comment="y", user=agent)
    cur = db.current("c3")["closing"]
    assert cur["action"] == "appeal" and cur["points"] == 10  # an appeal keeps the reviewed points
    cal = {r["item_id"]: r for r in db.calibration()}
    assert cal["greeting"] == {"item_id": "greeting", "n_reviewed": 2, "agreement": 0.5, "mean_abs_change": 3.0,
                               "n_override": 1}
    assert cal["closing"]["agreement"] == 0.0 and cal["closing"]["mean_abs_change"] == 10.0



def test_rerun_call_starts_unreviewed(tmp_path):
    db = ReviewDB(tmp_path / "r.sqlite")
    add = functools.partial(db.add_review, call_id="c1", item_id="greeting", comment="x", user=REV)
    add(action="override", machine_points=10, new_points=4, run_id="r1")
    add(action="override", machine_points=6, new_points=6, run_id="r1")
    assert db.current("c1", "r1")["greeting"]["points"] == 6
    assert db.current("c1", "r2") == {}  # re-processed: the old verdicts judged other machine points
    assert [h["current_run"] for h in db.history("c1", "r2")] == [False, False]
    add(action="confirm", machine_points=8, new_points=8, run_id="r2")
    assert db.current("c1", "r2")["greeting"]["points"] == 8
    assert [h["current_run"] for h in db.history("c1", "r2")] == [False, False, True]
    assert [h["current_run"] for h in db.history("c1", "r1")] == [True, True, False]
    old = {r["item_id"]: r for r in db.calibration({"c1": "r1"})}["greeting"]
    assert old["n_override"] == 1 and old["agreement"] == 1.0  # r1's latest: override to the same points
    new = {r["item_id"]: r for r in db.calibration({"c1": "r2"})}["greeting"]
    assert new == {"item_id": "greeting", "n_reviewed": 1, "agreement": 1.0, "mean_abs_change": 0.0,
                   "n_override": 0}
    assert db.calibration({"other": "r1"}) == []  # calls no longer in the results are left out


def test_old_database_file_gains_run_id(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE reviews (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, item_id TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('confirm','override','appeal','appeal_decision')),
            machine_points REAL, new_points REAL, comment TEXT NOT NULL DEFAULT '',
            user TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TRIGGER reviews_no_update BEFORE UPDATE ON reviews
            BEGIN SELECT RAISE(ABORT, 'reviews is append-only'); END;
        CREATE TRIGGER reviews_no_delete BEFORE DELETE ON reviews
            BEGIN SELECT RAISE(ABORT, 'reviews is append-only'); END;
        INSERT INTO reviews (call_id, item_id, action, machine_points, new_points, user, role, created_at)
            VALUES ('c1', 'greeting', 'confirm', 10, 10, 'rev', 'reviewer', '2026-01-01T00:00:00+00:00');""")
    con.commit()
    con.close()
    db = ReviewDB(path)
    assert db.history("c1", "r9")[0]["run_id"] is None
    assert db.current("c1", "r9")["greeting"]["points"] == 10  # before run tracking: counts for any run
    db.add_review(call_id="c1", item_id="greeting", action="override", machine_points=10, new_points=2,
                  comment="x", user=REV, run_id="r9")
    assert [h["run_id"] for h in ReviewDB(path).history("c1")] == [None, "r9"]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.con.execute("UPDATE reviews SET run_id='r9'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.con.execute("DELETE FROM reviews")


def test_expired_login_sessions_are_deleted_on_login(tmp_path, monkeypatch):
    import qc_pipeline.web.db as dbmod

    db = ReviewDB(tmp_path / "r.sqlite")
    user = db.add_user("rev", "longpassword", "reviewer")
    old = db.create_session(user)
    kept = db.create_session(user)  # logging in again does not revoke the first session
    assert db.get_session(old.token) and db.get_session(kept.token)
    later = dbmod._now() + dbmod.SESSION_TTL + dt.timedelta(minutes=1)
    monkeypatch.setattr(dbmod, "_now", lambda: later)
    assert db.get_session(old.token) is None
    db.create_session(user)
    assert db.con.execute("SELECT COUNT(*) FROM login_sessions").fetchone()[0] == 1


def test_login_throttle_reserves_attempts_and_stays_bounded(monkeypatch):
    import qc_pipeline.web.access as access

    clock = [1000.0]
    monkeypatch.setattr(access.time, "monotonic", lambda: clock[0])
    t = access.LoginThrottle(max_failures=5, window_s=300, lock_s=300)
    assert [t.try_acquire("u") for _ in range(7)] == [True] * 5 + [False] * 2  # pending checks count
    t.release("u")  # one check ended without a verdict: its slot is free again
    assert t.try_acquire("u") and not t.try_acquire("u")
    for _ in range(5):
        t.failed("u")
    assert t.locked("u") and not t.try_acquire("u")
    clock[0] += 301
    assert not t.locked("u") and t.try_acquire("u")
    t.succeeded("u")
    assert len(t) == 0
    for n in range(1000):  # a spray of names: expired ones are dropped on every call
        assert t.try_acquire(f"n{n}" + "x" * 500)
        t.failed(f"n{n}" + "x" * 500)
        clock[0] += 1
    assert len(t) == 300
    assert all(len(k) <= 65 for k in t._failures)
    assert not t.locked("n999" + "x" * 500) and t.try_acquire("n999" + "x" * 500)


def test_users_and_passwords(tmp_path):
    db = ReviewDB(tmp_path / "r.sqlite")
    db.add_user("ag1", "longpassword", "agent", "A1001")
    assert db.check_password("ag1", "longpassword") == User("ag1", "agent", "A1001")
    assert db.check_password("ag1", "wrong-password") is None
    assert db.check_password("nobody", "longpassword") is None
    raw = db.con.execute("SELECT pw_hash FROM users").fetchone()[0]
    assert b"longpassword" not in raw
    with pytest.raises(SetupError, match="agent-id"):
        db.add_user("ag2", "longpassword", "agent")
    with pytest.raises(SetupError, match="already exists"):
        db.add_user("ag1", "longpassword", "reviewer")
    with pytest.raises(SetupError, match="role"):
        db.add_user("x", "longpassword", "boss")


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


@pytest.mark.parametrize("header,expected", [
    (None, None), ("bytes=0-", (0, 999)), ("bytes=10-19", (10, 19)), ("bytes=-100", (900, 999)),
    ("bytes=990-5000", (990, 999)), ("items=0-1", None), ("bytes=0-1,5-6", None)])
def test_parse_range(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=20-10", "bytes=a-b", "bytes=-0"])
def test_parse_range_unsatisfiable(header):
    with pytest.raises(ValueError):
        parse_range(header, 1000)


# -- results join, html helpers ----------------------------------------------------------------------
def test_store_joins_and_flags(store):
    ss = store.sessions()
    assert len(ss) >= 12
    rude = ss["own-rude-w0"]
    assert rude.total is not None and rude.total < 60
    assert "low_score" in rude.reasons(60) and "attitude" in rude.failed_items
    assert ss["own-good-w0"].reasons(60) == ()
    queue = store.query(QueueFilter())
    assert queue and all(s.reasons(60) for s in queue)
    assert [s.total for s in queue] == sorted(s.total for s in queue)  # worst first
    team = store.query(QueueFilter(team="logistics", item_id="attitude"))
    assert team and all(s.team == "logistics" and "attitude" in s.failed_items for s in team)
    import datetime as dt
    week2 = store.query(QueueFilter(date_from=dt.date(2026, 10, 12), date_to=dt.date(2026, 10, 12),
                                    flagged_only=False))
    assert {s.call_id for s in week2 if s.call_id.startswith("own-")} == {"own-good-w1", "own-rude-w1",
                                                                          "own-silent-w1"}


def test_rerun_row_wins_and_store_refreshes(results, tmp_path):
    import shutil
    copy = shutil.copytree(results, tmp_path / "r")
    st = ResultsStore(copy, refresh_s=0)
    assert st.get("own-good-w0").team == "billing"
    part = sorted((copy / "sessions").glob("run_date=*/part-*.parquet"))[0]
    rows = pq.read_table(part, schema=SESSIONS).to_pylist()
    row = next(r for r in rows if r["call_id"] == "own-good-w0")
    import datetime as dt
    newer = {**row, "team": "moved", "run_id": "rerun", "processed_at": row["processed_at"] + dt.timedelta(hours=1)}
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist([newer], schema=SESSIONS), part.parent / "part-rerun-00000.parquet")
    s = st.get("own-good-w0")
    assert s.team == "moved" and s.total is None  # the re-run's scores are not there: never mixed with old ones


def test_highlight_escapes_and_marks():
    assert _highlight("<b>您好</b>，欢迎", ["您好"]) == "&lt;b&gt;<mark>您好</mark>&lt;/b&gt;，欢迎"
    assert evidence_keywords("申请、取消 | 我申请下取消订单") == ["申请", "取消"]
    assert evidence_keywords("emotion=30 | 没有") == []
    assert fmt_ts(75.4) == "01:15" and fmt_ts(3725) == "1:02:05" and fmt_ts(None) == ""


# -- export & reports --------------------------------------------------------------------------------
def test_export_csv_xlsx_html(store, tmp_path):
    res = export_cases(store, tmp_path / "csv", ExportOptions(below=60, team="billing", fmt="csv"))
    assert res.files and all(p.name.startswith("coaching_A100") for p in res.files)
    rows = list(csv.DictReader(io.StringIO(res.files[0].read_text("utf-8-sig"))))
    assert rows and all(float(r["总分"]) < 60 and r["班组"] == "billing" for r in rows)
    assert any(r["质检项ID"] == "attitude" and "态度" in r["证据原话"] for r in rows)
    x = export_cases(store, tmp_path / "x", ExportOptions(below=60, agent_id="A1001", fmt="xlsx"))
    wb = load_workbook(x.files[0])
    assert wb.sheetnames == ["概览", "案例"] and wb["概览"]["B1"].value == "A1001"
    assert wb["案例"].max_row - 1 == x.n_rows
    h = export_cases(store, tmp_path / "h", ExportOptions(below=60, agent_id="A1002", fmt="html"))
    page = h.files[0].read_text("utf-8")
    assert 'lang="zh-CN"' in page and "own-rude" in page and "<script" not in page


def test_export_html_audio_clip_fragment(tmp_path):
    from qc_pipeline.web.data import ItemView, SessionView
    from qc_pipeline.web.export import _write_html

    wav = REPO / "samples" / "calls" / "stereo_call_8k.wav"
    s = SessionView(call_id="c/1", kind="audio", source_path=str(wav), agent_id="A1", team="t", queue=None,
                    started_at="2026-11-02", status="ok", error_reason=None, duration_s=60, role_confidence=1,
                    run_id="r", total=40, grade="D",
                    items=(ItemView("greeting", "问候语", "graded", 0, 10, True, False,
                                    ({"turn_index": 0, "start": 1.5, "end": 6.25, "text": "您好 | 您好<x>",
                                      "rule_id": "g", "role": "agent"},)),))
    _write_html(tmp_path / "p.html", "A1", [s], tmp_path, copy_audio=True)
    page = (tmp_path / "p.html").read_text("utf-8")
    clip = next((tmp_path / "audio").glob("c_1-*.wav"))  # "c/1" sanitised, plus a hash that keeps it unique
    assert f'src="audio/{clip.name}#t=1.50,6.25"' in page and "您好&lt;x&gt;" in page and "00:01–00:06" in page
    assert clip.read_bytes() == wav.read_bytes()


def test_export_no_match_is_an_error(store, tmp_path):
    with pytest.raises(SetupError, match="no scored session below 1"):
        export_cases(store, tmp_path, ExportOptions(below=1, fmt="csv"))


def test_reports_levels(store):
    sessions = list(store.sessions().values())
    center = build_report(sessions, "center")
    assert [s["key"] for s in center["series"]] == ["center"] and center["n_sessions"] == len(sessions)
    assert center["weeks"] == sorted(center["weeks"]) and len(center["weeks"]) >= 4
    team = build_report(sessions, "team")
    assert {s["key"] for s in team["series"]} == {"billing", "logistics"}
    agent = build_report(sessions, "agent")
    a = next(s for s in agent["series"] if s["key"] == "A1001")
    mine = [x.total for x in sessions if x.agent_id == "A1001"]
    assert a["n"] == len(mine) and a["mean"] == round(sum(mine) / len(mine), 2)
    att = next(i for i in center["items"] if i["item_id"] == "attitude")
    assert all(0 <= w["pass_rate"] <= 1 for w in att["weeks"])
    page = render_report([center, team], title="t")
    assert page.count("<svg") == 4 and "<polyline" in page


# -- CLI ---------------------------------------------------------------------------------------------
def _cli(*args, stdin: str = ""):
    return subprocess.run([sys.executable, "-m", "qc_pipeline", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_cli_users_export_report(results, tmp_path):
    db = tmp_path / "db.sqlite"
    p = _cli("users", "add", "qa1", "--role", "reviewer", "--db", str(db), "--password-stdin", stdin="s3cret-pass\n")
    assert p.returncode == 0, p.stderr
    assert ReviewDB(db).check_password("qa1", "s3cret-pass") == User("qa1", "reviewer")
    assert _cli("users", "list", "--db", str(db)).stdout.strip() == "qa1\treviewer"
    bad = _cli("users", "add", "ag", "--role", "agent", "--db", str(db), stdin="s3cret-pass\n")
    assert bad.returncode == 2 and "--agent-id" in bad.stderr
    p = _cli("export", "--results", str(results), "--below", "60", "--team", "logistics", "--format", "csv",
             "--out", str(tmp_path / "exp"))
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in (tmp_path / "exp").iterdir()) == ["coaching_A2001.csv"]
    none = _cli("export", "--results", str(results), "--below", "0", "--format", "csv", "--out", str(tmp_path / "e"))
    assert none.returncode == 2 and "loosen" in none.stderr
    missing = _cli("export", "--results", str(tmp_path / "nope"), "--format", "csv", "--out", str(tmp_path / "e"))
    assert missing.returncode == 2 and "no sessions/ folder" in missing.stderr
    p = _cli("report", "--results", str(results), "--out", str(tmp_path / "rep.html"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "rep.html").read_text("utf-8").count("<svg") == 6


def test_report_weeks_include_gaps():
    import datetime as dt

    from qc_pipeline.web.reports import _week_range

    assert _week_range([dt.date(2026, 10, 5), dt.date(2026, 10, 27)]) == ["2026-W41", "2026-W42", "2026-W43",
                                                                         "2026-W44"]
    assert _week_range([dt.date(2025, 12, 31), dt.date(2026, 1, 5)]) == ["2026-W01", "2026-W02"]
    assert _week_range([]) == []


def test_spreadsheet_cells_never_run_as_formulas_and_names_stay_apart():
    from qc_pipeline.web.export import _cell, _safe_name

    assert _cell('=HYPERLINK("http://evil","点我")') == '\'=HYPERLINK("http://evil","点我")'
    assert [_cell(v) for v in ("+1", "-2", "@x", "好的", 3.5, None)] == ["'+1", "'-2", "'@x", "好的", 3.5, None]
    assert _safe_name("call_1") == "call_1" and _safe_name("call/1") != _safe_name("call_1")
    assert _safe_name("call/1").startswith("call_1-")
