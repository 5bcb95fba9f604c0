"""End-to-end in headless Chromium: log in, open a flagged call, override an item, reload, see it persist.

Skipped when /usr/bin/chromium (or playwright) is missing, unless QC_REQUIRE_BROWSER=1 (CI), then it fails.
Screenshots go to $QC_SCREENSHOT_DIR (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from qc_pipeline.web.server import App, AppConfig
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
    add_users(tmp / "db.sqlite")
    app = App(AppConfig(results=results, db_path=tmp / "db.sqlite", audio_roots=(tmp / "calls",)))
    with ServerThread(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _login(page, base: str, user: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_reviewer_overrides_item_and_it_persists(browser, base, shots):
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    _login(page, base, "rev")
    expect(page).to_have_url(re.compile(r"/queue$"))
    page.screenshot(path=shots / "01_queue.png", full_page=True)
    page.click("a[href='/sessions/own-rude-w0']")
    expect(page.locator("h2").first).to_contain_text("own-rude-w0")
    expect(page.locator("#turn-1 mark").first).to_have_text("这是规定")
    row = page.locator("tr[data-item=attitude]")
    row.locator("select[name=action]").select_option("override")
    row.locator("input[name=new_points]").fill("7.5")
    row.locator("textarea[name=comment]").fill("客户情绪激动，坐席语气生硬，改判 7.5 分")
    with page.expect_navigation():  # POST -> 303 -> the session page again
        row.locator("button[type=submit]").click()
    page.reload()
    row = page.locator("tr[data-item=attitude]")
    expect(row).to_contain_text("改判")
    expect(row).to_contain_text("7.5")
    history = page.locator("table.history")
    expect(history).to_contain_text("客户情绪激动，坐席语气生硬，改判 7.5 分")
    expect(history).to_contain_text("rev (reviewer)")
    page.screenshot(path=shots / "02_session_after_override.png", full_page=True)
    ctx.close()


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
    page.screenshot(path=shots / "03_audio_session.png", full_page=True)
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
    page.screenshot(path=shots / "04_agent_forbidden.png", full_page=True)
    resp = page.goto(base + "/sessions/own-rude-w2")  # own call: can appeal
    assert resp.status == 200
    row = page.locator("tr[data-item=attitude]")
    assert row.locator("select[name=action] option").all_inner_texts() == ["申诉"]
    row.locator("textarea[name=comment]").fill("客户先出言不逊")
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    expect(page.locator("table.history")).to_contain_text("客户先出言不逊")
    ctx.close()


def test_trainer_reports_page(browser, base, shots):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = ctx.new_page()
    _login(page, base, "trainer")
    expect(page).to_have_url(re.compile(r"/reports$"))
    expect(page.locator("svg.chart")).to_have_count(2)
    assert page.locator("svg.chart polyline").count() >= 2
    page.goto(base + "/reports?level=agent")
    page.screenshot(path=shots / "05_reports_agent.png", full_page=True)
    ctx.close()
