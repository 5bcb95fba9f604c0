"""End-to-end in headless Chromium (uvicorn on 127.0.0.1): claim → review → appeal → decision, search, the audit
trail of those steps, account disable/reset, the audio player, an agent's limits, reports with the drill-down
from a call reason's week to its calls.

Skipped when /usr/bin/chromium (or playwright) is missing, unless QC_REQUIRE_BROWSER=1 (CI), then it fails.
Screenshots go to $QC_SCREENSHOT_DIR (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from qc_pipeline.web.app import AppConfig, ReviewApp
from qc_pipeline.web.testing import PASSWORD, ServerThread, add_users, build_audio_results, build_chat_results

CHROMIUM = Path(os.environ.get("QC_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

_missing = "playwright is not installed" if sync_playwright is None else (
    f"{CHROMIUM} not found" if not CHROMIUM.exists() else "")
if _missing:
    if os.environ.get("QC_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"QC_REQUIRE_BROWSER=1 but {_missing}: install Debian chromium and playwright")
    pytest.skip(f"browser e2e skipped: {_missing} (set QC_REQUIRE_BROWSER=1 to make this an error)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = Path(os.environ.get("QC_SCREENSHOT_DIR") or tmp_path_factory.mktemp("shots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    build_chat_results(tmp)
    results = build_audio_results(tmp)  # same --out: the real sample call joins the chats
    db = add_users(tmp / "db.sqlite")
    db.add_user("temp", PASSWORD, "reviewer")
    app = ReviewApp(AppConfig(results=results, db_path=tmp / "db.sqlite", audio_roots=(tmp / "calls",)))
    app.start(wait=True)
    with ServerThread(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _login(page, base: str, user: str, password: str = PASSWORD) -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _page(browser, width: int = 1360):
    ctx = browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN")
    return ctx, ctx.new_page()


def test_claim_review_appeal_decision_and_its_audit_trail(browser, base, shots):
    ctx, page = _page(browser)
    _login(page, base, "rev")
    expect(page).to_have_url(re.compile(r"/queue$"))
    page.fill("input[name=q]", "own-rude-w2")  # search by call id
    page.click("form.filters button[type=submit]")
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    page.screenshot(path=shots / "01_queue_search.png", full_page=True)
    page.click("a[href='/sessions/own-rude-w2']")
    expect(page.locator("h2").first).to_contain_text("own-rude-w2")
    with page.expect_navigation():
        page.click("button[value=claim]")
    expect(page.locator("#wf-state")).to_contain_text("复核中")
    expect(page.locator("#turn-1 mark").first).to_have_text("这是规定")
    row = page.locator("tr[data-item=attitude]")
    expect(row.locator("blockquote.evidence").first).to_contain_text("规则")
    row.locator("select[name=action]").select_option("override")
    # no points for an override: refused by the server, the typed comment must survive
    row.locator("textarea[name=comment]").fill("客户情绪激动，坐席语气生硬，改判 7.5 分")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    expect(page.locator("#form-error")).to_contain_text("new_points")
    row = page.locator("tr[data-item=attitude]")
    expect(row.locator("textarea[name=comment]")).to_have_value("客户情绪激动，坐席语气生硬，改判 7.5 分")
    row.locator("select[name=action]").select_option("override")
    row.locator("input[name=new_points]").fill("7.5")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    with page.expect_navigation():
        page.click("button[value=done]")
    expect(page.locator("#wf-state")).to_contain_text("已复核")
    expect(page.locator("tr[data-item=attitude]")).to_contain_text("7.5")
    page.screenshot(path=shots / "02_session_reviewed.png", full_page=True)
    ctx.close()

    ctx, page = _page(browser)  # the agent appeals, once
    _login(page, base, "ag1")
    page.goto(base + "/sessions/own-rude-w2")
    row = page.locator("tr[data-item=attitude]")
    assert row.locator("select[name=action] option").all_inner_texts() == ["申诉"]
    row.locator("textarea[name=comment]").fill("客户先出言不逊")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    expect(page.locator("table.history")).to_contain_text("客户先出言不逊")
    assert page.locator("tr[data-item=attitude] form.review").count() == 0  # one appeal per item
    ctx.close()

    ctx, page = _page(browser)  # the admin finds it in the appeals list and decides
    _login(page, base, "admin")
    page.goto(base + "/appeals")
    expect(page.locator("table.appeals")).to_contain_text("客户先出言不逊")
    page.click("table.appeals a[href^='/sessions/own-rude-w2']")
    row = page.locator("tr[data-item=attitude]")
    row.locator("select[name=action]").select_option("appeal_decision")
    row.locator("input[name=new_points]").fill("12")
    row.locator("textarea[name=comment]").fill("申诉部分成立")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    expect(page.locator("tr[data-item=attitude]")).to_contain_text("申诉裁定")
    page.goto(base + "/appeals")
    expect(page.locator("table.appeals")).to_contain_text("没有待裁定的申诉")
    page.goto(base + "/audit?call=own-rude-w2")
    trail = page.locator("table.audit")
    for who, action in (("rev", "workflow"), ("rev", "review"), ("ag1", "review"), ("admin", "review"),
                        ("rev", "view_session"), ("ag1", "view_session")):
        expect(trail.locator("tr", has_text=f"{who} (").filter(has_text=action).first).to_be_visible()
    expect(trail).to_contain_text("appeal_decision")
    expect(trail).to_contain_text("127.0.0.1")
    page.screenshot(path=shots / "03_audit_trail.png", full_page=True)
    ctx.close()


def test_search_text_and_sort(browser, base, shots):
    ctx, page = _page(browser)
    _login(page, base, "rev")
    page.goto(base + "/sessions")
    page.fill("input[name=text]", "我就这态度")
    page.click("form.filters button[type=submit]")
    expect(page.locator("table.list tbody tr")).to_have_count(4)  # the four rude calls say it
    page.click("a.sort[data-sort=agent]")
    agents = page.locator("table.list tbody tr td:nth-child(4)").all_inner_texts()
    assert agents == sorted(agents) and len(agents) == 4
    page.click("a.sort[data-sort=agent]")
    assert page.locator("table.list tbody tr td:nth-child(4)").all_inner_texts() == sorted(agents, reverse=True)
    page.goto(base + "/sessions?from=2026-02-30")
    expect(page.locator("p.err")).to_contain_text("is not a date")
    page.screenshot(path=shots / "04_search.png", full_page=True)
    ctx.close()


def test_admin_disables_and_resets_an_account(browser, base, shots):
    uctx, user = _page(browser)
    _login(user, base, "temp")
    expect(user).to_have_url(re.compile(r"/queue$"))
    actx, admin = _page(browser)
    _login(admin, base, "admin")
    admin.goto(base + "/users")
    row = admin.locator("tr[data-user=temp]")
    with admin.expect_navigation():
        row.locator("button[value=disable]").click()
    expect(admin.locator("tr[data-user=temp]")).to_contain_text("已停用")
    user.reload()
    expect(user).to_have_url(re.compile(r"/login"))  # the open session ended
    _login(user, base, "temp")
    expect(user.locator("p.err")).to_contain_text("已停用")
    row = admin.locator("tr[data-user=temp]")
    with admin.expect_navigation():
        row.locator("button[value=enable]").click()
    row = admin.locator("tr[data-user=temp]")
    row.locator("input[name=password]").fill("1234567890")  # long enough for the form, too weak for the policy
    with admin.expect_navigation():
        row.locator("button[value=reset]").click()
    expect(admin.locator("p.err")).to_contain_text("two kinds")
    row = admin.locator("tr[data-user=temp]")
    row.locator("input[name=password]").fill("reset-by-admin-42")
    with admin.expect_navigation():
        row.locator("button[value=reset]").click()
    _login(user, base, "temp", "reset-by-admin-42")
    expect(user).to_have_url(re.compile(r"/queue$"))
    admin.goto(base + "/audit")
    expect(admin.locator("table.audit")).to_contain_text("user:temp")
    admin.screenshot(path=shots / "05_users.png", full_page=True)
    uctx.close()
    actx.close()


def test_audio_player_syncs_with_transcript(browser, base, shots):
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    _login(page, base, "rev")
    page.goto(base + "/sessions/demo-stereo-001")
    audio = page.locator("audio#player")
    expect(audio).to_have_count(1)
    page.wait_for_function("() => document.getElementById('player').readyState >= 1", timeout=15000)
    assert page.evaluate("() => document.getElementById('player').duration") > 50  # real 60 s call streamed
    line = page.locator(".utt").nth(2)
    start = float(line.get_attribute("data-start"))
    page.evaluate("() => { document.getElementById('player').muted = true; }")
    line.click()
    page.wait_for_function(f"() => Math.abs(document.getElementById('player').currentTime - {start}) < 1.5",
                           timeout=10000)
    page.evaluate("() => { const a = document.getElementById('player'); a.pause(); "
                  "a.dispatchEvent(new Event('timeupdate')); }")
    expect(line).to_have_class(re.compile(r"\bplaying\b"))
    page.evaluate("() => { document.getElementById('player').currentTime = 20; }")
    page.click("#fwd5")
    assert abs(page.evaluate("() => document.getElementById('player').currentTime") - 25) < 0.5
    page.click("#back5")
    assert abs(page.evaluate("() => document.getElementById('player').currentTime") - 20) < 0.5
    page.select_option("#speed", "1.5")
    assert page.evaluate("() => document.getElementById('player').playbackRate") == 1.5
    page.screenshot(path=shots / "06_audio_session.png", full_page=True)
    ctx.close()


def test_agent_cannot_open_other_agents_call(browser, base, shots):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = ctx.new_page()
    _login(page, base, "ag1")
    expect(page).to_have_url(re.compile(r"/sessions$"))
    assert page.locator("a[href='/sessions/own-rude-w1']").count() == 0  # A2001's call not listed
    resp = page.goto(base + "/sessions/own-rude-w1")
    assert resp.status == 404
    expect(page.locator("body")).to_contain_text("不存在或无权查看")
    resp = page.goto(base + "/queue")
    assert resp.status == 403
    page.screenshot(path=shots / "07_agent_forbidden.png", full_page=True)
    ctx.close()


def test_trainer_reports_page(browser, base, shots):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    _login(page, base, "trainer")
    expect(page).to_have_url(re.compile(r"/reports$"))
    expect(page.locator("svg.chart")).to_have_count(2)
    assert page.locator("svg.chart polyline").count() >= 2
    page.goto(base + "/reports?level=agent")
    page.screenshot(path=shots / "08_reports_agent.png", full_page=True)
    # call reasons by week: a reason's week cell opens the session list of exactly those calls
    page.click("#to-reasons")
    expect(page.locator("h2#reasons")).to_contain_text("来电原因")
    row = page.locator("table.reasons-week[data-dim=reason] tbody tr").first
    reason = row.get_attribute("data-value")
    cell = row.locator("td[data-week] a.drill").first
    n, week = int(cell.inner_text()), cell.locator("xpath=..").get_attribute("data-week")
    page.screenshot(path=shots / "09_reports_reasons.png", full_page=True)
    with page.expect_navigation():
        cell.click()
    expect(page).to_have_url(re.compile(r"/sessions\?.*week=" + week))
    expect(page.locator("table.list tbody tr")).to_have_count(n)
    texts = page.locator("table.list td.call-reason").all_inner_texts()
    assert len(texts) == n and all(t.endswith("/ " + reason) for t in texts), texts
    expect(page.locator("select[name=reason]")).to_have_value(reason)
    expect(page.locator("p.drill-filters")).to_contain_text(week)
    page.screenshot(path=shots / "10_reason_drill_down.png", full_page=True)
    ctx.close()
