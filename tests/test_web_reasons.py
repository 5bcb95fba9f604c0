"""Call reasons and types report: the read model's aggregation of the stored summaries (on a results folder
written with the pipeline's own ParquetSink), the report data and HTML, the CLI, and in the app the view, its
drill-down to exactly the counted calls, filter validation, agents' limits and the audit trail."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import shutil
import subprocess
import sys
from html import unescape
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

import duckdb
import pytest

from qc_pipeline.web.app import AppConfig, ReviewApp
from qc_pipeline.web.readmodel import ReadModel
from qc_pipeline.web.reasons import build_reasons, reasons_body
from qc_pipeline.web.testing import REPO, SUMMARY_CALLS, SUMMARY_RERUN, add_users, build_summary_results, client
from qc_pipeline.web.views import ListQuery

TZ = ZoneInfo("Asia/Shanghai")


def expected() -> dict[str, dict]:
    """Each call's latest summary from the dataset's definition, its ISO week in Asia/Shanghai (computed here
    independently of the SQL)."""
    calls = {}
    for cid, agent, team, started, call_type, reason, resolved, over in SUMMARY_CALLS:
        y, w, _ = dt.datetime.fromisoformat(started).astimezone(TZ).date().isocalendar()
        calls[cid] = {"agent": agent, "team": team, "week": f"{y}-W{w:02d}", "type": call_type, "reason": reason,
                      "resolved": resolved, "over": over}
    calls[SUMMARY_RERUN[0]].update(zip(("type", "reason", "resolved", "over"), SUMMARY_RERUN[1:]))
    return calls


def pick(**match) -> set[str]:
    return {cid for cid, c in expected().items() if all(c[k] == v for k, v in match.items())}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return build_summary_results(tmp_path_factory.mktemp("reasons") / "results")


@pytest.fixture(scope="module")
def model(results, tmp_path_factory):
    m = ReadModel(results, tmp_path_factory.mktemp("rm") / "rm.duckdb")
    m.refresh()
    yield m
    m.close()


def walk(model: ReadModel, **filters) -> list[str]:
    """Every call of a filtered list, page by page with keyset cursors (2 per page)."""
    page = model.page(ListQuery(per_page=2, sort="call", **filters))
    ids = [s.call_id for s in page.rows]
    while page.next:
        page = model.page(ListQuery(per_page=2, sort="call", after=page.next, **filters))
        ids += [s.call_id for s in page.rows]
    assert len(ids) == page.total
    return ids


# -- read model and report data ----------------------------------------------------------------------
def test_cube_counts_each_calls_latest_stored_summary(model):
    cubes, unsummarized = model.call_reasons(ListQuery())
    assert unsummarized == 1  # the failed call
    for dim in ("reason", "type"):
        want: dict[tuple, list[int]] = {}
        for c in expected().values():
            cell = want.setdefault((c[dim], c["team"], c["week"]), [0, 0, 0, 0, 0])
            for i, add in enumerate((1, c["over"] is True, c["over"] is not None, c["resolved"] is True,
                                     c["resolved"] is not None)):
                cell[i] += int(add)
        assert {tuple(r[:3]): list(r[3:]) for r in cubes[dim]} == want, dim
    assert ("物流配送", "billing", "2026-W41", 1, 0, 1, 1, 1) in cubes["reason"]  # s02's first run does not count


def test_report_top_reasons_shares_trends_over_target_and_resolved(model):
    rep = build_reasons(*model.call_reasons(ListQuery()))
    assert rep["weeks"] == ["2026-W41", "2026-W42", "2026-W43", "2026-W44"]  # the empty week is on the axis
    assert rep["teams"] == ["billing", "logistics", None] and rep["n_calls"] == 14 and rep["n_unsummarized"] == 1
    top = rep["reason"][0]
    assert [v["value"] for v in rep["reason"]] == ["物流配送", "退换货退款", "发票"]  # most calls first
    assert (top["n"], top["share"]) == (7, 0.5)
    # W41: s01 s04 of 4; W42: s05 (Monday in Shanghai) s07 s08 of 6; W43 none; W44: s11 s12 of 4
    assert [(w["n"], w["share"], w["delta"]) for w in top["weeks"]] == [
        (2, 0.5, None), (3, 0.5, 1), (0, None, -3), (2, 0.5, 2)]
    assert top["weeks"][1]["share_delta"] == 0.0 and top["weeks"][3]["share_delta"] is None
    assert top["resolved"] == {"n": 3, "known": 6, "share": 0.5}
    billing = top["teams"][0]
    assert billing == {"team": "billing", "n": 4, "share": 0.5, "last_week": 2, "delta": 2}  # s01 s07 s11 s12 of 8
    complaint = next(v for v in rep["type"] if v["value"] == "投诉")
    assert complaint["over_target"] == {"n": 4, "known": 4, "share": 1.0}
    assert [w["over_target"] for w in complaint["weeks"]] == [1, 2, 0, 1]
    consult = next(v for v in rep["type"] if v["value"] == "咨询")
    assert consult["over_target"] == {"n": 0, "known": 6, "share": 0.0}
    filtered = build_reasons(*model.call_reasons(ListQuery(team="logistics", date_from=dt.date(2026, 10, 12))))
    assert filtered["n_calls"] == len(pick(team="logistics")) - 1 and filtered["teams"] == ["logistics"]


def test_every_cell_drills_down_to_exactly_its_calls(model):
    for dim, param in (("reason", "call_reason"), ("type", "call_type")):
        for value, team, week, n, over, *_ in model.call_reasons(ListQuery())[0][dim]:
            if team is not None:
                ids = walk(model, **{param: value}, team=team, week=week)
                assert set(ids) == pick(**{dim: value}, team=team, week=week) and len(ids) == n
            if over:
                ids = walk(model, **{param: value}, week=week, over_target=True)
                assert set(ids) == pick(**{dim: value}, week=week, over=True)
    assert set(walk(model, call_reason="物流配送", resolved=False)) == {"s04", "s08", "s12"}
    assert set(walk(model, call_type="投诉", over_target=True)) == {"s04", "s06", "s09", "s12"}
    assert walk(model, call_reason="物流配送", week="2026-W43") == []


def test_results_without_summaries_still_work(results, tmp_path):
    """Older runs wrote no summaries: no folder at all, or parts without a summaries twin."""
    bare = shutil.copytree(results, tmp_path / "bare")
    shutil.rmtree(bare / "summaries")
    m = ReadModel(bare, tmp_path / "bare.duckdb")
    m.refresh()
    cubes, unsummarized = m.call_reasons(ListQuery())
    assert cubes == {"reason": [], "type": []} and unsummarized == 15
    rep = build_reasons(cubes, unsummarized)
    assert rep["n_calls"] == 0 and "没有小结" in reasons_body(rep)
    assert m.page(ListQuery()).total == 15 and m.get("s01").call_reason is None
    partial = shutil.copytree(results, tmp_path / "partial")
    next((partial / "summaries").glob("run_date=*/part-*-aaaaaa-00000.parquet")).unlink()  # s01-s04
    m = ReadModel(partial, tmp_path / "partial.duckdb")
    m.refresh()
    _, unsummarized = m.call_reasons(ListQuery())
    assert unsummarized == 4 and m.get("s02").call_reason == SUMMARY_RERUN[2]  # s01 s03 s04, failed s15
    assert m.get("s01").call_reason is None and m.get("s05").call_reason == "物流配送"


def test_read_model_of_an_older_version_is_rebuilt(results, tmp_path):
    m = ReadModel(results, tmp_path / "rm.duckdb")
    m.refresh()
    m.close()
    con = duckdb.connect(str(tmp_path / "rm.duckdb"))  # as version 3 left it: cur without the summary columns
    con.execute("DROP TABLE su_raw")
    for col in ("call_type", "call_reason", "resolved", "over_duration_target"):
        con.execute(f"ALTER TABLE cur DROP COLUMN {col}")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'version'")
    con.close()
    m = ReadModel(results, tmp_path / "rm.duckdb")
    assert m.count() == 0 and m.refresh() > 0
    assert m.get("s02").call_type == "办理" and m.call_reasons(ListQuery())[1] == 1
    m.close()


def test_reasons_html_links_escapes_and_plain_numbers():
    cubes = {"reason": [("<b>价格</b>", "a&b", "2026-W41", 2, 0, 0, 1, 2),
                        ("<b>价格</b>", None, "2026-W42", 1, 0, 0, 0, 0)],
             "type": [("投诉", "a&b", "2026-W41", 2, 1, 2, 1, 2), ("投诉", None, "2026-W42", 1, 0, 0, 0, 0)]}
    rep = build_reasons(cubes)
    html = reasons_body(rep, "http://qa:8080", {"from": "2026-10-01", "to": None})
    assert "<b>价格</b>" not in html and "&lt;b&gt;价格&lt;/b&gt;" in html
    hrefs = [dict(parse_qsl(urlsplit(unescape(h)).query)) for h in re.findall(r'class="drill" href="([^"]+)"', html)]
    assert {"reason": "<b>价格</b>", "week": "2026-W41", "from": "2026-10-01"} in hrefs
    assert {"reason": "<b>价格</b>", "team": "a&b", "from": "2026-10-01"} in hrefs
    assert {"reason": "<b>价格</b>", "resolved": "0", "from": "2026-10-01"} in hrefs  # 1 of 2 unresolved
    assert {"type": "投诉", "over_target": "1", "from": "2026-10-01"} in hrefs
    assert all("team" not in h or h["team"] == "a&b" for h in hrefs)  # "(无班组)" cannot be filtered: no link
    assert all(u.startswith("http://qa:8080/sessions?") for u in re.findall(r'href="([^"]+)"', html))
    assert 'class="drill"' not in reasons_body(rep, None)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "qc_pipeline", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180)


def test_cli_report_json_and_html_with_app_links(results, tmp_path):
    db = tmp_path / "db.sqlite"
    p = _cli("report", "--results", str(results), "--db", str(db), "--out", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    data = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert [r["level"] for r in data["reports"]] == ["center", "team", "agent"]
    assert data["call_reasons"]["n_calls"] == 14 and data["call_reasons"]["reason"][0]["value"] == "物流配送"
    p = _cli("report", "--results", str(results), "--db", str(db), "--out", str(tmp_path / "r.html"),
             "--app-url", "http://qa-host:8080/", "--team", "billing")
    assert p.returncode == 0, p.stderr
    html = (tmp_path / "r.html").read_text("utf-8")
    assert "来电原因与类型" in html and 'href="http://qa-host:8080/sessions?team=billing&amp;reason=' in html
    bad = _cli("report", "--results", str(results), "--db", str(db), "--out", str(tmp_path / "x.html"),
               "--app-url", "qa-host:8080")
    assert bad.returncode == 2 and "--app-url" in bad.stderr
    from qc_pipeline.web.audit import AuditLog

    rows = [r for r in AuditLog(db).rows() if r["action"] == "report_cli"]
    assert len(rows) == 2 and rows[-1]["detail"]["call_reasons"] == len(pick(team="billing"))


# -- the app -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(results, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    add_users(tmp / "db.sqlite")
    a = ReviewApp(AppConfig(results=results, db_path=tmp / "db.sqlite", audio_roots=(results,), per_page=3))
    a.start(wait=True)
    yield a
    a.stop()


def api_walk(c, url: str) -> list[dict]:
    """All sessions of a list URL, following the keyset ``next`` cursors (3 per page)."""
    got = c.get(url)
    assert got.status_code == 200, got.text
    page, rows = got.json(), []
    rows += page["sessions"]
    while page["next"]:
        page = c.get(f"{url}&after={page['next']}").json()
        rows += page["sessions"]
    assert len(rows) == page["total"] and len({r["call_id"] for r in rows}) == len(rows)
    return rows


def test_api_drill_down_returns_exactly_the_counted_calls(app):
    c = client(app, "trainer")
    rep = c.get("/api/reports/reasons").json()
    assert rep["n_calls"] == 14
    for dim in ("reason", "type"):
        for v in rep[dim]:
            for cell in v["weeks"]:
                rows = api_walk(c, f"/api/sessions?{dim}={quote(v['value'])}&week={cell['week']}")
                assert {r["call_id"] for r in rows} == pick(**{dim: v["value"]}, week=cell["week"])
                assert len(rows) == cell["n"] and all(r["call_" + dim] == v["value"] for r in rows)
            for cell in v["teams"]:
                if cell["team"]:
                    rows = api_walk(c, f"/api/sessions?{dim}={quote(v['value'])}&team={cell['team']}")
                    assert {r["call_id"] for r in rows} == pick(**{dim: v["value"]}, team=cell["team"])
    rows = api_walk(c, "/api/sessions?type=" + quote("投诉") + "&over_target=1&from=2026-10-12")
    assert {r["call_id"] for r in rows} == {"s06", "s09", "s12"}
    html = c.get("/reports/reasons").text
    link = unescape(re.search(r'<td data-week="2026-W42"><a class="drill" href="([^"]+)">(\d+)</a>', html).group(1))
    page = c.get(link.replace("/sessions?", "/api/sessions?")).json()
    assert page["total"] == len(pick(reason="物流配送", week="2026-W42")) == 3


def test_agents_see_only_their_own_calls_and_no_report(app):
    ag = client(app, "ag1")  # agent A1001
    assert ag.get("/api/reports/reasons").status_code == 403 and ag.get("/reports/reasons").status_code == 403
    assert ag.get("/reports/reasons/download").status_code == 403
    rows = api_walk(ag, "/api/sessions?reason=" + quote("物流配送") + "&agent=A2001")
    assert {r["call_id"] for r in rows} == pick(reason="物流配送", agent="A1001") == {"s01", "s11"}
    html = ag.get("/sessions?reason=" + quote("物流配送") + "&week=2026-W42").text
    assert "s05" not in html and "s07" not in html and "共 0 条" in html


def test_filters_are_validated_with_clear_errors(app):
    c = client(app, "trainer")
    for query, message in (("reason=" + quote("不存在"), "known: 发票"), ("type=x", "known: "),
                           ("week=2026-41", "not an ISO week"), ("week=2026-W60", "not an ISO week"),
                           ("resolved=yes", "resolved must be 1 or 0"),
                           ("over_target=2", "over_target must be 1 or 0")):
        r = c.get("/api/sessions?" + query)
        assert r.status_code == 400 and message in r.json()["error"], (query, r.text)
    page = c.get("/sessions?week=W41")
    assert page.status_code == 400 and "not an ISO week" in page.text and 'name="reason"' in page.text
    assert c.get("/api/reports/reasons?from=2026-10-20&to=2026-10-01").status_code == 400
    kept = c.get("/sessions?reason=" + quote("发票") + "&week=2026-W44&resolved=1").text
    assert 'data-filter="week"' in kept and '<input type="hidden" name="resolved" value="1">' in kept
    assert re.search(r'href="/sessions\?reason=%E5%8F%91%E7%A5%A8">清除', kept)


def test_viewing_and_exporting_reasons_is_audited(app):
    c = client(app, "admin", address="10.9.8.7")
    assert c.get("/reports/reasons?team=billing").status_code == 200
    r = c.get("/reports/reasons/download?team=logistics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert {row["team"] for row in rows} == {"logistics"}
    assert sum(int(row["n"]) for row in rows if row["dimension"] == "reason") == len(pick(team="logistics"))
    trail = [r for r in app.audit.rows(limit=20) if r["user"] == "admin"]
    view = next(r for r in trail if r["action"] == "view_report_reasons")
    assert view["detail"]["query"] == {"team": "billing"} and view["detail"]["n_calls"] == len(pick(team="billing"))
    assert view["address"] == "10.9.8.7"
    export = next(r for r in trail if r["action"] == "export_report_reasons")
    assert export["target"] == "export:call_reasons.csv" and export["detail"]["n_rows"] == len(rows)
    assert app.audit.verify().ok
