"""Review app over real HTTP: login, role matrix, CSRF, review/appeal flow, audio confinement and ranges."""

from __future__ import annotations

import csv
import datetime as dt
import http.client
import io
import json
import threading
import time
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qc_pipeline.schema import SESSIONS, TABLES
from qc_pipeline.web.server import App, AppConfig
from qc_pipeline.web.testing import PASSWORD, REPO, Client, ServerThread, add_users, build_chat_results

WAV = REPO / "samples" / "calls" / "stereo_call_8k.wav"


def _add_audio_sessions(results, audio_root, outside):
    """Extra committed sessions rows (real schema) whose source paths probe the audio confinement."""
    (audio_root / "ok.wav").write_bytes(WAV.read_bytes())
    (outside / "secret.wav").write_bytes(b"RIFF-secret")
    (audio_root / "link.wav").symlink_to(outside / "secret.wav")
    part = sorted((results / "sessions").glob("run_date=*/part-*.parquet"))[0]
    base = pq.read_table(part, schema=SESSIONS).to_pylist()[0]
    rows = [{**base, "call_id": cid, "kind": "audio", "source_path": path, "agent_id": "A1001", "run_id": "probe"}
            for cid, path in (("aud-ok", str(audio_root / "ok.wav")), ("aud-link", str(audio_root / "link.wav")),
                              ("aud-outside", str(outside / "secret.wav")),
                              ("aud-dotdot", str(audio_root / ".." / "outside" / "secret.wav")),
                              ("../../etc/passwd", "/etc/passwd"), ('x"><script>alert(1)</script>', None))]
    pq.write_table(pa.Table.from_pylist(rows, schema=SESSIONS), part.parent / "part-probe-00000.parquet")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, results folder) of one server shared by the module."""
    tmp = tmp_path_factory.mktemp("api")
    results = build_chat_results(tmp)
    audio_root, outside = tmp / "audio", tmp / "outside"
    audio_root.mkdir(), outside.mkdir()
    _add_audio_sessions(results, audio_root, outside)
    add_users(tmp / "db.sqlite").add_user("burst", PASSWORD, "reviewer")
    app = App(AppConfig(results=results, db_path=tmp / "db.sqlite", audio_roots=(audio_root,)))
    with ServerThread(app) as url:
        yield url, results


@pytest.fixture(scope="module")
def base(served):
    return served[0]


def client(base, user=None):
    c = Client(base)
    if user:
        assert c.login(user) == 303
        assert c.csrf
    return c


def _token(page: bytes) -> str:
    return page.decode().split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _json(resp):
    status, _h, body = resp
    return status, json.loads(body)


# -- auth --------------------------------------------------------------------------------------------
def test_anonymous_is_sent_to_login(base):
    c = client(base)
    for path in ("/", "/queue", "/sessions/own-rude-w0", "/reports", "/users", "/calibration", "/export"):
        status, h, _b = c.get(path)
        assert status == 303 and h["location"].startswith("/login"), path
    for path in ("/api/queue", "/api/sessions/own-rude-w0", "/api/sessions/aud-ok/audio", "/api/reports"):
        assert c.get(path)[0] == 401, path
    assert c.request("POST", "/api/sessions/own-rude-w0/reviews", json_body={})[0] == 401
    assert c.get("/nope")[0] == 404


def test_login_cookie_flags_and_failures(base):
    c = client(base)
    _s, h, page = c.get("/login")
    assert "HttpOnly" in h["set-cookie"] and "SameSite=Strict" in h["set-cookie"]
    status, _h, page = c.request("POST", "/login", form={"csrf": "forged", "username": "rev",
                                                         "password": "correct-horse-9"})
    assert status == 403 and "qc_session" not in c.cookies
    status, _h, page = c.request("POST", "/login", form={"csrf": _token(page), "username": "rev", "password": "bad"})
    assert status == 401 and "用户名或密码错误" in page.decode()
    status, h, _b = c.request("POST", "/login", form={"csrf": _token(page), "username": "rev",
                                                      "password": "correct-horse-9", "next": "//evil.example/"})
    assert status == 303 and h["location"] == "/queue"  # open redirect refused
    for nxt in ("/\\evil.example/", "/%0d%0aSet-Cookie:%20x=1", "/\r\nSet-Cookie: x=1", "/\tfoo", "/队列"):
        c2 = client(base)
        _s, _h, p2 = c2.get("/login")
        status, h2, _b = c2.request("POST", "/login", form={"csrf": _token(p2), "username": "rev",
                                                            "password": "correct-horse-9", "next": nxt})
        assert status == 303 and h2["location"] in ("/queue", nxt) and "\n" not in h2["location"], nxt
        assert "x=1" not in h2.get("set-cookie", ""), nxt
    session_cookie = next(v for v in h["set-cookie"].split("\n") if v.startswith("qc_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie and c.cookies["qc_session"]


def test_lockout_after_repeated_failures(base):
    c = client(base)
    _s, _h, page = c.get("/login")
    for _ in range(5):
        status, _h, page = c.request("POST", "/login", form={"csrf": _token(page), "username": "trainer",
                                                             "password": "x"})
        assert status == 401
    status, _h, page = c.request("POST", "/login", form={"csrf": _token(page), "username": "trainer",
                                                         "password": "correct-horse-9"})
    assert status == 429 and "qc_session" not in c.cookies


ROLE_MATRIX = {  # path -> roles allowed (others: 403)
    "/queue": {"rev", "admin"}, "/api/queue": {"rev", "admin"},
    "/sessions": {"rev", "admin", "ag1"}, "/calibration": {"rev", "admin"},
    "/api/calibration": {"rev", "admin"}, "/reports": {"admin"}, "/api/reports?level=team": {"admin"},
    "/export": {"admin"}, "/users": {"admin"}, "/api/users": {"admin"},
}



def test_parallel_logins_cannot_pass_the_lockout(base):
    """12 wrong passwords at once: at most 5 are checked (401), the rest are refused up front (429)."""
    clients = [Client(base) for _ in range(12)]
    tokens = [_token(c.get("/login")[2]) for c in clients]
    gate, statuses = threading.Barrier(len(clients)), []

    def attempt(c, token):
        gate.wait()
        statuses.append(c.request("POST", "/login", form={"csrf": token, "username": "burst",
                                                           "password": "wrong-password"})[0])

    threads = [threading.Thread(target=attempt, args=ct) for ct in zip(clients, tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [401] * 5 + [429] * 7, statuses
    c = Client(base)
    assert c.login("burst") == 429 and "qc_session" not in c.cookies  # the right password is refused while locked


@pytest.mark.parametrize("user", ["rev", "ag1", "admin"])
def test_role_matrix(base, user):
    c = client(base, user)
    for path, ok in ROLE_MATRIX.items():
        status = c.get(path)[0]
        assert status == (200 if user in ok else 403), (user, path, status)


def test_trainer_matrix(base):
    c = Client(base)
    c.cookies.clear()
    # (the lockout test above locked "trainer" for 5 minutes; use a fresh trainer account via admin)
    admin = client(base, "admin")
    assert admin.request("POST", "/users", form={"csrf": admin.csrf, "username": "trainer2", "role": "trainer",
                                                 "password": "correct-horse-9", "agent_id": ""})[0] == 303
    assert c.login("trainer2") == 303
    for path, expected in (("/reports", 200), ("/api/reports", 200), ("/export", 200), ("/calibration", 200),
                           ("/sessions/own-rude-w0", 200), ("/queue", 403), ("/users", 403)):
        assert c.get(path)[0] == expected, path
    status, body = _json(c.request("POST", "/api/sessions/own-rude-w0/reviews", headers={"X-CSRF-Token": c.csrf},
                                   json_body={"item_id": "greeting", "action": "override", "new_points": 5,
                                              "comment": "x"}))
    assert status == 403


def test_keep_alive_connection_survives_rejected_posts(base):
    u = urlsplit(base)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    for _ in range(3):  # bodies of refused POSTs (no login, bad CSRF) must not leak into the next request
        con.request("POST", "/api/sessions/own-rude-w0/reviews", body=b'{"action": "confirm"}',
                    headers={"Content-Type": "application/json"})
        resp = con.getresponse()
        assert resp.status == 401 and json.loads(resp.read())["status"] == 401
        con.request("POST", "/login", body=b"csrf=x&username=rev&password=y",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        resp = con.getresponse()
        assert resp.status == 403 and "表单已过期" in resp.read().decode()
    con.close()


def test_csrf_required_on_posts(base):
    c = client(base, "rev")
    body = {"item_id": "greeting", "action": "confirm"}
    assert c.request("POST", "/api/sessions/own-rude-w0/reviews", json_body=body)[0] == 403
    assert c.request("POST", "/api/sessions/own-rude-w0/reviews", json_body=body,
                     headers={"X-CSRF-Token": "nope"})[0] == 403
    assert c.request("POST", "/logout", form={})[0] == 403


# -- queue and sessions ------------------------------------------------------------------------------
def test_queue_filters_and_order(base):
    c = client(base, "rev")
    status, q = _json(c.get("/api/queue?team=billing&item=attitude"))
    assert status == 200 and q["total"] > 0
    assert all(s["team"] == "billing" and "attitude" in s["failed_items"] and s["reasons"] for s in q["sessions"])
    totals = [s["total"] for s in q["sessions"]]
    assert totals == sorted(totals)
    _s, q2 = _json(c.get("/api/queue?from=2026-10-05&to=2026-10-05&flag=low_score"))
    assert {s["call_id"] for s in q2["sessions"] if s["call_id"].startswith("own-")} == {"own-rude-w0",
                                                                                       "own-silent-w0"}
    _s, all_ = _json(c.get("/api/sessions?agent=A2001"))
    assert all_["total"] > q["total"] * 0 and {s["agent_id"] for s in all_["sessions"]} == {"A2001"}
    html = c.get("/queue?team=billing")[2].decode()
    assert 'lang="zh-CN"' in html and "own-rude-w0" in html


def test_agent_sees_only_own_calls(base):
    c = client(base, "ag1")
    _s, q = _json(c.get("/api/sessions?agent=A2001"))  # the agent filter is pinned to the user's own id
    assert q["total"] > 0 and {s["agent_id"] for s in q["sessions"]} == {"A1001"}
    assert c.get("/sessions/own-rude-w2")[0] == 200          # A1001's
    assert c.get("/sessions/own-rude-w1")[0] == 404          # A2001's
    assert c.get("/api/sessions/own-rude-w1")[0] == 404
    assert c.get("/api/sessions/own-rude-w1/reviews")[0] == 404


def test_session_page_has_transcript_marks_and_items(base):
    c = client(base, "rev")
    status, s = _json(c.get("/api/sessions/own-rude-w0"))
    assert status == 200 and s["total"] < 60 and s["utterances"]
    att = next(i for i in s["items"] if i["item_id"] == "attitude")
    assert att["failed"] and att["evidence"]
    html = c.get("/sessions/own-rude-w0")[2].decode()
    assert '<div class="utt agent evidence" id="turn-1"' in html and "<mark>这是规定</mark>" in html
    assert 'name="action"' in html and "override" in html


# -- reviews, appeals, calibration -------------------------------------------------------------------
def test_override_appeal_decision_flow(base):
    rev, ag, admin = client(base, "rev"), client(base, "ag1"), client(base, "admin")
    url = "/api/sessions/own-rude-w2/reviews"   # agent A1001's call

    def post(c, **body):
        return _json(c.request("POST", url, json_body=body, headers={"X-CSRF-Token": c.csrf}))

    assert post(rev, item_id="attitude", action="override", new_points=99, comment="x")[0] == 400  # > max
    assert post(rev, item_id="attitude", action="override", new_points=5)[0] == 400                # no comment
    assert post(rev, item_id="nope", action="confirm")[0] == 400
    assert post(rev, item_id="attitude", action="appeal", comment="x")[0] == 403
    assert post(ag, item_id="attitude", action="override", new_points=15, comment="x")[0] == 403
    status, r = post(rev, item_id="attitude", action="override", new_points=10, comment="语气生硬，酌情给分")
    assert status == 201 and r["current"]["attitude"]["points"] == 10
    assert post(admin, item_id="attitude", action="appeal_decision", new_points=15, comment="x")[0] == 409
    assert post(ag, item_id="attitude", action="appeal", comment="客户先辱骂")[0] == 201
    assert post(ag, item_id="attitude", action="appeal", comment="again")[0] == 409
    # while the appeal is pending a reviewer cannot quietly close it with a new confirm/override
    assert post(rev, item_id="attitude", action="confirm")[0] == 409
    assert post(rev, item_id="attitude", action="override", new_points=6, comment="x")[0] == 409
    assert post(rev, item_id="attitude", action="appeal_decision", new_points=15, comment="x")[0] == 403
    status, r = post(admin, item_id="attitude", action="appeal_decision", new_points=12, comment="申诉部分成立")
    assert status == 201 and r["current"]["attitude"]["points"] == 12
    _s, hist = _json(rev.get(url))
    assert [h["action"] for h in hist["history"]] == ["override", "appeal", "appeal_decision"]
    assert [h["user"] for h in hist["history"]] == ["rev", "ag1", "admin"]
    # the agent of another call cannot appeal on it
    other = client(base, "ag2")
    assert _json(other.request("POST", url, json_body={"item_id": "attitude", "action": "appeal", "comment": "x"},
                               headers={"X-CSRF-Token": other.csrf}))[0] == 404
    _s, cal = _json(rev.get("/api/calibration"))
    att = next(i for i in cal["items"] if i["item_id"] == "attitude")
    assert att["n_reviewed"] >= 1 and att["n_override"] >= 1 and att["agreement"] < 1
    # a lone surrogate in a JSON comment is stored as a replacement mark, not a 500
    status, r = post(rev, item_id="greeting", action="override", new_points=5, comment="x\ud800")
    assert status == 201 and r["current"]["greeting"]["comment"] == "x?"


def test_html_form_review_redirects_and_persists(base):
    c = client(base, "rev")
    status, h, _b = c.request("POST", "/sessions/own-silent-w0/review",
                              form={"csrf": c.csrf, "item_id": "greeting", "action": "confirm", "comment": ""})
    assert status == 303 and h["location"].startswith("/sessions/own-silent-w0")
    html = c.get("/sessions/own-silent-w0")[2].decode()
    assert "<td>greeting</td><td>确认</td>" in html



def _rerun(results, call_id: str) -> str:
    """A committed re-run of ``call_id`` (new run_id, later processed_at) in all tables, like `qc-pipeline run`."""
    run_id = "rerun-" + call_id
    for table, schema in TABLES.items():
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
    base, results = served
    rev = client(base, "rev")
    url = "/api/sessions/own-silent-w3/reviews"

    def post(**body):
        return _json(rev.request("POST", url, json_body=body, headers={"X-CSRF-Token": rev.csrf}))

    assert post(item_id="greeting", action="override", new_points=1, comment="旧运行")[0] == 201
    status, before = _json(rev.get(url))
    assert before["current"]["greeting"]["points"] == 1 and before["history"][0]["current_run"]
    run_id = _rerun(results, "own-silent-w3")
    for _ in range(50):  # the store re-reads changed parts within 2 s
        status, after = _json(rev.get(url))
        if after["run_id"] == run_id:
            break
        time.sleep(0.1)
    assert after["run_id"] == run_id and after["current"] == {}
    assert [(h["comment"], h["current_run"], h["run_id"]) for h in after["history"]] == [
        ("旧运行", False, before["run_id"])]
    _s, sess = _json(rev.get("/api/sessions/own-silent-w3"))
    assert sess["items"] and all(i["review"] is None for i in sess["items"])
    html = rev.get("/sessions/own-silent-w3")[2].decode()
    assert "早前运行" in html and "→ <strong>1</strong>" not in html
    assert post(item_id="greeting", action="confirm")[0] == 201
    _s, now = _json(rev.get(url))
    assert now["current"]["greeting"]["run_id"] == run_id and now["current"]["greeting"]["action"] == "confirm"


# -- audio -------------------------------------------------------------------------------------------
def test_audio_served_with_ranges(base):
    c = client(base, "rev")
    data = WAV.read_bytes()
    status, h, body = c.get("/api/sessions/aud-ok/audio")
    assert status == 200 and body == data and h["content-type"] == "audio/wav" and h["accept-ranges"] == "bytes"
    status, h, body = c.get("/api/sessions/aud-ok/audio", headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200] and h["content-range"] == f"bytes 100-199/{len(data)}"
    status, h, _b = c.get("/api/sessions/aud-ok/audio", headers={"Range": f"bytes={len(data)}-"})
    assert status == 416 and h["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("call_id", ["aud-link", "aud-outside", "aud-dotdot", "..%2F..%2Fetc%2Fpasswd",
                                     "own-good-w0"])
def test_audio_cannot_escape_roots(base, call_id):
    status, _h, body = client(base, "rev").get(f"/api/sessions/{call_id}/audio")
    assert status == 404 and b"secret" not in body and b"root:" not in body


def test_audio_path_tricks_in_url(base):
    c = client(base, "rev")
    for path in ("/api/sessions/../../etc/passwd/audio", "/api/sessions/aud-ok/../../../etc/passwd",
                 "/api/sessions/%2e%2e/audio"):
        status, _h, body = c.get(path)
        assert status == 404 and b"root:" not in body, path


def test_agent_cannot_fetch_other_agents_audio(base):
    assert client(base, "ag2").get("/api/sessions/aud-ok/audio")[0] == 404
    assert client(base, "ag1").get("/api/sessions/aud-ok/audio")[0] == 200


# -- reports, export, latency ------------------------------------------------------------------------
def test_reports_and_export_download(base):
    c = client(base, "admin")
    status, rep = _json(c.get("/api/reports?level=agent"))
    assert status == 200 and {s["key"] for s in rep["series"]} >= {"A1001", "A1002", "A2001"}
    assert c.get("/api/reports?level=galaxy")[0] == 400
    html = c.get("/reports?level=team")[2].decode()
    assert html.count("<svg") == 2
    status, h, body = c.get("/export/download?agent=A1001&below=60&format=csv")
    assert status == 200 and "coaching_A1001.csv" in h["content-disposition"]
    assert "own-rude" in body.decode("utf-8-sig")
    assert c.get("/export/download?agent=A1001&below=0&format=csv")[0] == 404
    status, _h, body = c.get("/export/download?agent=A1001&below=60&format=csv&since=2026-10-12&until=2026-10-25")
    dates = {r["时间"][:10] for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig")))}
    assert status == 200 and dates and all("2026-10-12" <= d <= "2026-10-25" for d in dates), dates
    assert c.get("/export/download?agent=A1001&format=csv&since=2027-01-01")[0] == 404
    assert c.get("/export/download?agent=A1001&format=csv&until=next-week")[0] == 400


def test_html_output_is_escaped(base):
    c = client(base, "rev")
    html = c.get("/sessions?agent=A1001&page=1")[2].decode()
    assert "<script>alert(1)</script>" not in html
    assert "x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    status, _h, page = c.get("/sessions/" + quote('x"><script>alert(1)</script>', safe=""))
    assert status == 200 and "<script>alert(1)" not in page.decode()
    assert 'href="/sessions/x%22%3E%3Cscript%3E' in html


def test_latency_budget(base):
    c = client(base, "rev")
    t0 = time.perf_counter()
    for _ in range(10):
        assert c.get("/api/queue")[0] == 200
        assert c.get("/sessions/own-rude-w0")[0] == 200
    per_request = (time.perf_counter() - t0) / 20
    assert per_request < 0.5, per_request
