"""Review app over HTTP (Starlette TestClient): login, role matrix, CSRF, lists, workflow, review/appeal flow,
audio confinement and ranges, audit trail, accounts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
import time
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qc_pipeline.schema import SESSIONS, TABLES
from qc_pipeline.web.app import AppConfig, ReviewApp
from qc_pipeline.web.testing import PASSWORD, REPO, add_users, build_chat_results, client, form_token, login

WAV = REPO / "samples" / "calls" / "stereo_call_8k.wav"


def _add_audio_sessions(results, audio_root, outside):
    """Extra committed sessions rows (real schema) whose source paths probe the audio confinement."""
    (audio_root / "ok.wav").write_bytes(WAV.read_bytes())
    (outside / "secret.wav").write_bytes(b"RIFF-secret")
    (audio_root / "link.wav").symlink_to(outside / "secret.wav")
    part = sorted((results / "sessions").glob("run_date=*/part-*.parquet"))[0]
    base = pq.read_table(part, schema=SESSIONS).to_pylist()[0]
    rows = [{**base, "call_id": cid, "kind": "audio", "source_path": path, "agent_id": "A1001", "run_id": "probe",
             "flags": flags, "role_confidence": conf}
            for cid, path, flags, conf in (
                ("aud-ok", str(audio_root / "ok.wav"), [], 1.0),
                ("aud-link", str(audio_root / "link.wav"), [], 1.0),
                ("aud-outside", str(outside / "secret.wav"), [], 1.0),
                ("aud-dotdot", str(audio_root / ".." / "outside" / "secret.wav"), [], 1.0),
                ("../../etc/passwd", "/etc/passwd", [], 1.0),
                ('x"><script>alert(1)</script>', None, [], 1.0),
                ("flag-asr", None, ["low_asr_confidence"], 1.0),      # a stored flag: queued
                ("unflagged-lowconf", None, [], 0.5))]                 # no stored flag: not queued
    pq.write_table(pa.Table.from_pylist(rows, schema=SESSIONS), part.parent / "part-probe-00000.parquet")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(app, results folder) shared by the module."""
    tmp = tmp_path_factory.mktemp("api")
    results = build_chat_results(tmp)
    audio_root, outside = tmp / "audio", tmp / "outside"
    audio_root.mkdir(), outside.mkdir()
    _add_audio_sessions(results, audio_root, outside)
    db = add_users(tmp / "db.sqlite")
    for name in ("burst", "victim", "gone", "resetme", "rolechg"):
        db.add_user(name, PASSWORD, "reviewer")
    app = ReviewApp(AppConfig(results=results, db_path=tmp / "db.sqlite", audio_roots=(audio_root,), refresh_s=0.2))
    app.start(wait=True)
    yield app, results
    app.stop()


@pytest.fixture(scope="module")
def app(served):
    return served[0]


def post(c, url, **body):
    r = c.post(url, json=body, headers={"X-CSRF-Token": c.csrf or ""})
    return r.status_code, r.json()


# -- auth --------------------------------------------------------------------------------------------
def test_anonymous_is_sent_to_login(app):
    c = client(app)
    for path in ("/", "/queue", "/sessions/own-rude-w0", "/reports", "/users", "/calibration", "/export", "/audit",
                 "/appeals"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    for path in ("/api/queue", "/api/sessions/own-rude-w0", "/api/sessions/aud-ok/audio", "/api/reports"):
        assert c.get(path).status_code == 401, path
    assert c.post("/api/sessions/own-rude-w0/reviews", json={}).status_code == 401
    assert c.get("/nope").status_code == 404


def test_login_cookie_flags_and_failures(app):
    c = client(app)
    r = c.get("/login")
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    r = c.post("/login", data={"csrf": "forged", "username": "rev", "password": PASSWORD})
    assert r.status_code == 403 and "qc_session" not in c.cookies
    r = c.post("/login", data={"csrf": form_token(r.text), "username": "rev", "password": "bad"})
    assert r.status_code == 401 and "用户名或密码错误" in r.text
    r = c.post("/login", data={"csrf": form_token(r.text), "username": "rev", "password": PASSWORD,
                               "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/queue"  # open redirect refused
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("qc_session="))
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    for nxt in ("/\\evil.example/", "/%0d%0aSet-Cookie:%20x=1", "/\r\nSet-Cookie: x=1", "/\tfoo", "/队列"):
        c2 = client(app)
        r2 = c2.post("/login", data={"csrf": form_token(c2.get("/login").text), "username": "rev",
                                     "password": PASSWORD, "next": nxt})
        assert r2.status_code == 303 and r2.headers["location"] in ("/queue", nxt), nxt
        assert "\n" not in r2.headers["location"] and "x=1" not in r2.headers.get("set-cookie", ""), nxt


def test_user_names_are_case_insensitive(app):
    assert client(app, "REV").csrf  # logs in as rev
    admin = client(app, "admin")
    r = admin.post("/users", data={"csrf": admin.csrf, "username": "Rev", "role": "reviewer",
                                   "password": "another-pass-77"})
    assert r.status_code == 400 and "already exists" in r.text


def test_lockout_is_per_user_and_address(app):
    attacker = client(app, address="10.6.6.6")
    for _ in range(5):
        assert login(attacker, "victim", "wrong-pass") == 401
    assert login(attacker, "victim") == 429                     # locked for the attacker's address ...
    assert login(client(app, address="10.1.1.1"), "victim") == 303  # ... not for the victim's own
    r = attacker.post("/login", data={"csrf": form_token(attacker.get("/login").text), "username": "victim",
                                      "password": PASSWORD})
    assert r.status_code == 429 and "分钟后再试" in r.text


def test_parallel_logins_cannot_pass_the_lockout(app):
    """12 wrong passwords at once: at most 5 are checked (401), the rest are refused up front (429)."""
    clients = [client(app) for _ in range(12)]
    tokens = [form_token(c.get("/login").text) for c in clients]
    gate, statuses = threading.Barrier(len(clients)), []

    def attempt(c, token):
        gate.wait()
        statuses.append(c.post("/login", data={"csrf": token, "username": "burst",
                                               "password": "wrong-password"}).status_code)

    threads = [threading.Thread(target=attempt, args=ct) for ct in zip(clients, tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [401] * 5 + [429] * 7, statuses
    assert login(client(app), "burst") == 429  # the right password is refused while locked


ROLE_MATRIX = {  # path -> users allowed (others: 403)
    "/queue": {"rev", "admin"}, "/api/queue": {"rev", "admin"},
    "/sessions": {"rev", "admin", "ag1", "trainer"}, "/calibration": {"rev", "admin", "trainer"},
    "/api/calibration": {"rev", "admin", "trainer"}, "/reports": {"admin", "trainer"},
    "/api/reports?level=team": {"admin", "trainer"}, "/reports/reasons": {"admin", "trainer"},
    "/api/reports/reasons": {"admin", "trainer"}, "/export": {"admin", "trainer"}, "/users": {"admin"},
    "/api/users": {"admin"}, "/appeals": {"admin"}, "/audit": {"admin"}, "/api/audit": {"admin"},
}


@pytest.mark.parametrize("user", ["rev", "ag1", "admin", "trainer"])
def test_role_matrix(app, user):
    c = client(app, user)
    for path, ok in ROLE_MATRIX.items():
        assert c.get(path).status_code == (200 if user in ok else 403), (user, path)
    status, _ = post(c, "/api/sessions/own-rude-w0/reviews", item_id="greeting", action="override", new_points=5,
                     comment="x")
    assert user in ("rev", "admin") or status in (403, 404)


def test_csrf_required_on_posts(app):
    c = client(app, "rev")
    body = {"item_id": "greeting", "action": "confirm"}
    assert c.post("/api/sessions/own-rude-w0/reviews", json=body).status_code == 403
    assert c.post("/api/sessions/own-rude-w0/reviews", json=body, headers={"X-CSRF-Token": "nope"}).status_code == 403
    assert c.post("/api/sessions/own-rude-w0/workflow", json={"action": "claim"}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403


# -- lists -------------------------------------------------------------------------------------------
def test_queue_filters_and_order(app):
    c = client(app, "rev")
    q = c.get("/api/queue?team=billing&item=attitude").json()
    assert q["total"] > 0
    assert all(s["team"] == "billing" and "attitude" in s["failed_items"] and s["reasons"] for s in q["sessions"])
    totals = [s["total"] for s in q["sessions"]]
    assert totals == sorted(totals)  # worst first
    q2 = c.get("/api/queue?from=2026-10-05&to=2026-10-05&flag=low_score").json()
    assert {s["call_id"] for s in q2["sessions"] if s["call_id"].startswith("own-")} == {"own-rude-w0",
                                                                                       "own-silent-w0"}
    all_ = c.get("/api/sessions?agent=A2001").json()
    assert all_["total"] > 0 and {s["agent_id"] for s in all_["sessions"]} == {"A2001"}
    html = c.get("/queue?team=billing").text
    assert 'lang="zh-CN"' in html and "own-rude-w0" in html


def test_queue_reasons_are_the_stored_flags_only(app):
    c = client(app, "rev")
    ids = {s["call_id"]: s for s in c.get("/api/queue?q=flag-asr").json()["sessions"]}
    assert ids["flag-asr"]["reasons"] == ["low_asr_confidence"]
    assert c.get("/api/queue?q=unflagged-lowconf").json()["total"] == 0  # role_confidence 0.5, no stored flag
    assert c.get("/api/sessions?q=unflagged-lowconf").json()["total"] == 1


def test_search_sort_and_uncapped_keyset_pager(app):
    c = client(app, "rev")
    assert [s["call_id"] for s in c.get("/api/sessions?q=OWN-RUDE-W").json()["sessions"]] != []
    assert {s["agent_id"] for s in c.get("/api/sessions?q=A2001").json()["sessions"]} == {"A2001"}
    hits = c.get("/api/sessions?" + "text=" + quote("我就这态度")).json()
    assert {s["call_id"] for s in hits["sessions"]} == {f"own-rude-w{w}" for w in range(4)}
    by_agent = c.get("/api/sessions?sort=agent&dir=desc").json()["sessions"]
    agents = [s["agent_id"] or "" for s in by_agent]
    assert agents == sorted(agents, reverse=True)
    # a tiny page size: walk every page forward with keyset cursors, then back
    first = c.get("/api/sessions?sort=call").json()
    seen, cur, pages = [s["call_id"] for s in first["sessions"]], first, 1
    while cur["next"]:
        cur = c.get("/api/sessions?sort=call&after=" + cur["next"]).json()
        seen += [s["call_id"] for s in cur["sessions"]]
        pages += 1
        assert cur["page"] == pages
    assert seen == sorted(seen) and len(seen) == first["total"] == len(set(seen))
    back = c.get("/api/sessions?sort=call&before=" + cur["prev"]).json() if cur["prev"] else first
    assert back["page"] == max(1, pages - 1)
    assert c.get("/api/sessions?sort=call&after=garbage!").status_code == 400


def test_invalid_dates_are_rejected_with_a_message(app):
    c = client(app, "rev")
    r = c.get("/queue?from=2026-02-30")
    assert r.status_code == 400 and "is not a date" in r.text and 'name="from"' in r.text  # the form stays
    assert c.get("/api/queue?to=next-week").status_code == 400
    assert c.get("/api/queue?from=2026-10-20&to=2026-10-01").status_code == 400
    assert c.get("/api/queue?sort=evil").status_code == 400


def test_agent_sees_only_own_calls(app):
    c = client(app, "ag1")
    q = c.get("/api/sessions?agent=A2001").json()  # the agent filter is pinned to the user's own id
    assert q["total"] > 0 and {s["agent_id"] for s in q["sessions"]} == {"A1001"}
    assert c.get("/sessions/own-rude-w2").status_code == 200          # A1001's
    assert c.get("/sessions/own-rude-w1").status_code == 404          # A2001's
    assert c.get("/api/sessions/own-rude-w1").status_code == 404
    assert c.get("/api/sessions/own-rude-w1/reviews").status_code == 404
    assert c.get("/api/sessions?q=own-rude-w1").json()["total"] == 0


def test_session_page_evidence_rule_and_missing_evidence(app):
    c = client(app, "rev")
    s = c.get("/api/sessions/own-rude-w0").json()
    assert s["total"] < 60 and s["utterances"]
    att = next(i for i in s["items"] if i["item_id"] == "attitude")
    assert att["failed"] and att["evidence"]
    html = c.get("/sessions/own-rude-w0").text
    assert '<div class="utt agent evidence" id="turn-1"' in html and "<mark>这是规定</mark>" in html
    assert "规则 " + att["evidence"][0]["rule_id"] in html and 'href="#turn-1"' in html
    silent = c.get("/api/sessions/own-silent-w0").json()
    assert [i for i in silent["items"] if i["failed"] and not i["evidence"]]  # e.g. no greeting said
    assert "未检出相关话术" in c.get("/sessions/own-silent-w0").text
    audio_page = c.get("/sessions/aud-ok").text
    assert 'id="back5"' in audio_page and 'id="fwd5"' in audio_page and 'id="speed"' in audio_page
    assert "时区 Asia/Shanghai" in html and "2026-10-05 10:00" in html  # started 10:00+08:00, shown in +08:00


# -- workflow, reviews, appeals ----------------------------------------------------------------------
def test_claim_release_done_and_no_double_claim(app):
    rev, rev2, admin = client(app, "rev"), client(app, "rev2"), client(app, "admin")
    url = "/api/sessions/own-silent-w1/workflow"
    assert post(rev, url, action="claim")[1]["state"] == "claimed"
    assert post(rev2, url, action="claim")[0] == 409
    assert post(rev2, "/api/sessions/own-silent-w1/reviews", item_id="greeting", action="confirm")[0] == 409
    assert post(rev2, url, action="release")[0] == 409
    mine = {s["call_id"] for s in rev.get("/api/queue?state=mine").json()["sessions"]}
    assert "own-silent-w1" in mine
    assert "own-silent-w1" not in {s["call_id"] for s in rev2.get("/api/queue?state=pending").json()["sessions"]}
    assert post(admin, url, action="release")[1]["state"] == "pending"
    assert post(rev2, url, action="claim")[1]["user"] == "rev2"
    assert post(rev2, url, action="done")[1]["state"] == "done"
    row = next(s for s in rev.get("/api/queue?state=done").json()["sessions"] if s["call_id"] == "own-silent-w1")
    assert row["state"] == "done" and row["state_user"] == "rev2"
    assert "已复核" in rev.get("/queue?state=done").text


def test_override_appeal_decision_flow(app):
    rev, ag, admin = client(app, "rev"), client(app, "ag1"), client(app, "admin")
    url = "/api/sessions/own-rude-w2/reviews"   # agent A1001's call
    assert post(rev, url, item_id="attitude", action="override", new_points=99, comment="x")[0] == 400  # > max
    assert post(rev, url, item_id="attitude", action="override", new_points=5)[0] == 400                # no comment
    assert post(rev, url, item_id="nope", action="confirm")[0] == 400
    assert post(rev, url, item_id="attitude", action="appeal", comment="x")[0] == 403
    assert post(ag, url, item_id="attitude", action="override", new_points=15, comment="x")[0] == 403
    status, r = post(rev, url, item_id="attitude", action="override", new_points=10, comment="语气生硬，酌情给分")
    assert status == 201 and r["current"]["attitude"]["points"] == 10
    assert post(admin, url, item_id="attitude", action="appeal_decision", new_points=15, comment="x")[0] == 409
    full = next(i for i in ag.get("/api/sessions/own-rude-w2").json()["items"] if i["applicable"] and not i["failed"])
    assert post(ag, url, item_id=full["item_id"], action="appeal", comment="x")[0] == 409  # lost no points
    assert post(ag, url, item_id="attitude", action="appeal", comment="客户先辱骂")[0] == 201
    assert post(ag, url, item_id="attitude", action="appeal", comment="again")[0] == 409
    assert post(rev, url, item_id="attitude", action="confirm")[0] == 409
    assert post(rev, url, item_id="attitude", action="appeal_decision", new_points=15, comment="x")[0] == 403
    appeals = admin.get("/api/appeals").json()["appeals"]
    assert [(a["call_id"], a["item_id"], a["user"]) for a in appeals if a["call_id"] == "own-rude-w2"] == [
        ("own-rude-w2", "attitude", "ag1")]
    assert "own-rude-w2" in admin.get("/appeals").text
    status, r = post(admin, url, item_id="attitude", action="appeal_decision", new_points=12, comment="申诉部分成立")
    assert status == 201 and r["current"]["attitude"]["points"] == 12
    assert not [a for a in admin.get("/api/appeals").json()["appeals"] if a["call_id"] == "own-rude-w2"]
    assert post(ag, url, item_id="attitude", action="appeal", comment="再申诉")[0] == 409  # one appeal per item
    hist = rev.get(url).json()
    assert [h["action"] for h in hist["history"]] == ["override", "appeal", "appeal_decision"]
    other = client(app, "ag2")
    assert post(other, url, item_id="attitude", action="appeal", comment="x")[0] == 404
    r = rev.post(url, content=b'{"item_id": "greeting", "action": "override", "new_points": 5, "comment": "x\\ud800"}',
                 headers={"X-CSRF-Token": rev.csrf, "Content-Type": "application/json"})
    assert r.status_code == 201 and r.json()["current"]["greeting"]["comment"] == "x?"  # lone surrogate: no 500


def test_appeal_deadline(served, tmp_path):
    app, results = served
    late = ReviewApp(AppConfig(results=results, db_path=app.cfg.db_path, audio_roots=app.cfg.audio_roots,
                               readmodel_path=tmp_path / "rm.duckdb", appeal_days=1e-9))
    late.start(wait=True)
    try:
        ag = client(late, "ag1")  # own-silent-w1 is A1001's
        lost = next(i for i in ag.get("/api/sessions/own-silent-w1").json()["items"] if i["failed"])
        status, body = post(ag, "/api/sessions/own-silent-w1/reviews", item_id=lost["item_id"], action="appeal",
                            comment="x")
        assert status == 409 and "deadline" in body["error"]
    finally:
        late.stop()


def test_form_errors_keep_the_typed_comment(app):
    c = client(app, "rev")
    r = c.post("/sessions/own-silent-w0/review", data={"csrf": c.csrf, "item_id": "attitude", "action": "override",
                                                        "new_points": "99", "comment": "我写了很长的意见"})
    assert r.status_code == 400 and 'id="form-error"' in r.text and ">我写了很长的意见</textarea>" in r.text
    r = c.post("/sessions/own-silent-w0/review", data={"csrf": c.csrf, "item_id": "greeting", "action": "confirm"})
    assert r.status_code == 303 and r.headers["location"].startswith("/sessions/own-silent-w0")
    assert "<td>greeting</td><td>确认</td>" in c.get("/sessions/own-silent-w0").text


def test_calibration_reviewer_vs_reviewer(app):
    rev, rev2 = client(app, "rev"), client(app, "rev2")
    for c, pts in ((rev, 5), (rev2, 5)):
        wf = "/api/sessions/own-good-w3/workflow"
        assert post(c, wf, action="claim")[0] == 200
        assert post(c, "/api/sessions/own-good-w3/reviews", item_id="greeting", action="override",
                    new_points=pts, comment="双人复核")[0] == 201
        assert post(c, wf, action="done")[0] == 200
    cal = rev.get("/api/calibration").json()
    greeting = next(i for i in cal["items"] if i["item_id"] == "greeting")
    assert greeting["n_double"] >= 1 and greeting["agreement_reviewers"] == 1.0
    assert {r["user"] for r in cal["reviewers"]} >= {"rev", "rev2"}
    html = rev.get("/calibration").text
    assert "质检员之间 κ" in html and "按质检员" in html


def _rerun(results, call_id: str) -> str:
    """A committed re-run of ``call_id`` (new run_id, later processed_at) in all tables, like `qc-pipeline run`."""
    run_id = "rerun-" + call_id
    for table in ("utterances", "scores", "item_results", "sessions"):  # sessions last: the commit marker
        schema = TABLES[table]
        parts = sorted((results / table).glob("run_date=*/part-*.parquet"))
        rows = [r for part in parts for r in pq.read_table(part, schema=schema).to_pylist() if r["call_id"] == call_id]
        assert rows, (table, call_id)
        for r in rows:
            r["run_id"] = run_id
            if table == "sessions":
                r["processed_at"] += dt.timedelta(hours=1)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), parts[0].parent / f"part-{run_id}-00000.parquet")
    return run_id


def test_rerun_call_does_not_inherit_old_reviews(served):
    app, results = served
    rev = client(app, "rev")
    url = "/api/sessions/own-silent-w3/reviews"
    assert post(rev, url, item_id="greeting", action="override", new_points=1, comment="旧运行")[0] == 201
    before = rev.get(url).json()
    assert before["current"]["greeting"]["points"] == 1
    run_id = _rerun(results, "own-silent-w3")
    for _ in range(100):  # picked up by the background refresh; requests never wait for it
        after = rev.get(url).json()
        if after["run_id"] == run_id:
            break
        time.sleep(0.1)
    assert after["run_id"] == run_id and after["current"] == {}
    assert [(h["comment"], h["current_run"]) for h in after["history"]] == [("旧运行", False)]
    html = rev.get("/sessions/own-silent-w3").text
    assert "早前运行" in html and "→ <strong>1</strong>" not in html
    state = next(s for s in rev.get("/api/sessions?q=own-silent-w3").json()["sessions"])
    assert state["state"] == "pending"  # the claim was on the old run


# -- audio -------------------------------------------------------------------------------------------
def test_audio_served_with_ranges(app):
    c = client(app, "rev")
    data = WAV.read_bytes()
    r = c.get("/api/sessions/aud-ok/audio")
    assert r.status_code == 200 and r.content == data and r.headers["content-type"] == "audio/wav"
    assert r.headers["accept-ranges"] == "bytes"
    r = c.get("/api/sessions/aud-ok/audio", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    r = c.get("/api/sessions/aud-ok/audio", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("call_id", ["aud-link", "aud-outside", "aud-dotdot", "..%2F..%2Fetc%2Fpasswd",
                                     "own-good-w0"])
def test_audio_cannot_escape_roots(app, call_id):
    r = client(app, "rev").get(f"/api/sessions/{call_id}/audio")
    assert r.status_code == 404 and b"secret" not in r.content and b"root:" not in r.content


def test_audio_path_tricks_in_url(app):
    c = client(app, "rev")
    for path in ("/api/sessions/../../etc/passwd/audio", "/api/sessions/aud-ok/../../../etc/passwd",
                 "/api/sessions/%2e%2e/audio"):
        r = c.get(path)
        assert r.status_code == 404 and b"root:" not in r.content, path


def test_agent_cannot_fetch_other_agents_audio(app):
    assert client(app, "ag2").get("/api/sessions/aud-ok/audio").status_code == 404
    assert client(app, "ag1").get("/api/sessions/aud-ok/audio").status_code == 200


# -- reports, export, escaping -----------------------------------------------------------------------
def test_reports_and_export_download(app):
    c = client(app, "admin")
    rep = c.get("/api/reports?level=agent").json()
    assert {s["key"] for s in rep["series"]} >= {"A1001", "A1002", "A2001"}
    assert c.get("/api/reports?level=galaxy").status_code == 400
    assert c.get("/reports?level=team").text.count("<svg") == 2
    r = c.get("/export/download?agent=A1001&format=csv")
    assert r.status_code == 200 and "coaching_A1001.csv" in r.headers["content-disposition"]
    assert "own-rude" in r.content.decode("utf-8-sig")
    assert c.get("/export/download?agent=A1001&below=0&format=csv").status_code == 404
    r = c.get("/export/download?agent=A1001&below=60&format=csv&since=2026-10-12&until=2026-10-25")
    dates = {row["时间"][:10] for row in csv.DictReader(io.StringIO(r.content.decode("utf-8-sig")))}
    assert r.status_code == 200 and dates and all("2026-10-12" <= d <= "2026-10-25" for d in dates), dates
    assert c.get("/export/download?agent=A1001&format=csv&since=2027-01-01").status_code == 404
    assert c.get("/export/download?agent=A1001&format=csv&until=next-week").status_code == 400


def test_html_output_is_escaped(app):
    c = client(app, "rev")
    html = c.get("/sessions?agent=A1001").text
    assert "<script>alert(1)</script>" not in html
    assert "x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    r = c.get("/sessions/" + quote('x"><script>alert(1)</script>', safe=""))
    assert r.status_code == 200 and "<script>alert(1)" not in r.text
    assert 'href="/sessions/x%22%3E%3Cscript%3E' in html
    assert "script-src 'nonce-" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"


# -- audit and accounts ------------------------------------------------------------------------------
def test_every_read_and_change_is_audited(app):
    c = client(app, "trainer", address="10.2.3.4")
    assert c.get("/sessions/own-good-w2").status_code == 200
    assert c.get("/api/sessions/aud-ok/audio", headers={"Range": "bytes=0-9"}).status_code == 206
    assert c.get("/export/download?agent=A1002&format=csv").status_code == 200
    rows = list(app.audit.rows(limit=10))
    mine = [(r["action"], r["call_id"], r["target"]) for r in rows if r["user"] == "trainer"]
    assert ("view_session", "own-good-w2", None) in mine
    assert ("stream_recording", "aud-ok", "recording:aud-ok") in mine
    assert ("export_download", None, "export:csv") in mine
    exp = next(r for r in rows if r["action"] == "export_download")
    assert exp["address"] == "10.2.3.4" and exp["status"] == 200 and exp["detail"]["calls"]
    login_row = next(r for r in app.audit.rows(limit=50) if r["action"] == "login" and r["user"] == "trainer")
    assert login_row["detail"]["result"] == "ok"
    assert app.audit.verify().ok
    assert client(app, "admin").get("/api/audit?call=own-good-w2").json()["rows"][0]["user"] == "trainer"


def test_account_disable_reset_role_revoke(app):
    admin = client(app, "admin")
    gone = client(app, "gone")
    assert gone.get("/queue").status_code == 200
    r = admin.post("/users/gone", data={"csrf": admin.csrf, "action": "disable"})
    assert r.status_code == 303
    assert gone.get("/queue").status_code == 303          # the open session ended
    assert login(client(app), "gone") == 401              # and no new one
    admin.post("/users/gone", data={"csrf": admin.csrf, "action": "enable"})
    assert login(client(app), "gone") == 303
    weak = admin.post("/users/resetme", data={"csrf": admin.csrf, "action": "reset", "password": "12345678"})
    assert weak.status_code == 400 and "at least 10" in weak.text
    old = client(app, "resetme")
    assert admin.post("/users/resetme", data={"csrf": admin.csrf, "action": "reset",
                                              "password": "new-pass-2026"}).status_code == 303
    assert old.get("/queue").status_code == 303
    assert login(client(app), "resetme") == 401 and login(client(app), "resetme", "new-pass-2026") == 303
    assert admin.post("/users/rolechg", data={"csrf": admin.csrf, "action": "role", "role": "trainer"}).status_code == 303
    assert client(app, "rolechg").get("/queue").status_code == 403
    assert admin.post("/users/admin", data={"csrf": admin.csrf, "action": "disable"}).status_code == 400
    first = client(app, "rolechg")
    second = client(app, "rolechg")
    assert first.get("/reports").status_code == 303 and second.get("/reports").status_code == 200  # 2nd login wins
    r = admin.post("/api/users/rolechg", json={"action": "revoke"}, headers={"X-CSRF-Token": admin.csrf})
    assert r.status_code == 200 and second.get("/reports").status_code == 303
    changes = [(r["action"], r["target"], r["detail"].get("change")) for r in app.audit.rows(limit=40)
               if r["action"] == "user_change"]
    assert ("user_change", "user:gone", "disable") in changes and ("user_change", "user:resetme", "reset") in changes
