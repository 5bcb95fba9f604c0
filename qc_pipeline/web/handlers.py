"""Route handlers.  Each takes the request handler ``h`` (see :mod:`server`) plus the URL groups.

The router has already checked login, the route's permission and the CSRF token of POSTs;
handlers add the per-object checks (an agent sees only own calls, per-action permissions).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import tempfile
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlsplit

from qc_pipeline.errors import SetupError
from qc_pipeline.web import pages
from qc_pipeline.web.access import ACTION_PERMISSION, HOME, allowed, can_see
from qc_pipeline.web.audio import content_type, file_size, iter_file, parse_range, resolve_audio
from qc_pipeline.web.data import QueueFilter, SessionView, parse_date
from qc_pipeline.web.db import current_state
from qc_pipeline.web.reports import LEVELS, build_report, report_body

log = logging.getLogger(__name__)

COOKIE = "qc_session"
LOGIN_COOKIE = "qc_login"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- login -------------------------------------------------------------------------------------------
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")


def _safe_next(url: str) -> str:
    """Only a same-site path: no scheme/host, no ``//`` or ``/\\`` (browsers read both as a host), no
    whitespace, control characters (header injection) or non-ASCII."""
    url = url or "/"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not _LOCAL_PATH.fullmatch(url):
        return "/"
    return url


def _login_page(h, error: str = "", status: int = 200, next_url: str = "/") -> None:
    token = secrets.token_urlsafe(24)
    h.html(pages.login_page(token, error, _safe_next(next_url)), status,
           {"Set-Cookie": h.set_cookie(LOGIN_COOKIE, token)})


def login_form(h) -> None:
    if h.login is not None:
        return h.redirect(_safe_next(h.query.get("next", "")) if h.query.get("next") else HOME[h.user.role])
    _login_page(h, next_url=h.query.get("next", "/"))


def login_submit(h) -> None:
    form = h.body()
    given, expected = str(form.get("csrf") or ""), h.cookie(LOGIN_COOKIE) or ""
    if not given or not expected or not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        return _login_page(h, "表单已过期，请重试 (CSRF check failed)", 403)
    name, password = str(form.get("username") or ""), str(form.get("password") or "")
    nxt = str(form.get("next") or "/")
    if not h.app.throttle.try_acquire(name):  # reserved before hashing: parallel attempts count too
        log.warning("login for %r refused: locked out after repeated failures", name)
        return _login_page(h, "失败次数过多，请 5 分钟后再试", 429, nxt)
    try:
        user = h.app.db.check_password(name, password)
    except BaseException:
        h.app.throttle.release(name)
        raise
    if user is None:
        h.app.throttle.failed(name)
        log.info("failed login for %r from %s", name, h.client_address[0])
        return _login_page(h, "用户名或密码错误", 401, nxt)
    h.app.throttle.succeeded(name)
    sess = h.app.db.create_session(user)
    target = _safe_next(nxt)
    h.redirect(HOME[user.role] if target == "/" else target,
               {"Set-Cookie": [h.set_cookie(COOKIE, sess.token), h.set_cookie(LOGIN_COOKIE, "", 0)]})


def logout(h) -> None:
    h.app.db.end_session(h.login.token)
    h.redirect("/login", {"Set-Cookie": h.set_cookie(COOKIE, "", 0)})


def home(h) -> None:
    h.redirect(HOME[h.user.role])


# -- lists -------------------------------------------------------------------------------------------
def _filter(h, flagged_only: bool) -> QueueFilter:
    q = h.query
    agent = q.get("agent") or None
    if h.user.role == "agent":
        agent = h.user.agent_id or "\0"  # agents are pinned to their own id, whatever the URL says
    try:
        below = float(q["below"]) if q.get("below") else None
    except ValueError:
        raise HttpError(400, "below must be a number") from None
    return QueueFilter(date_from=parse_date(q.get("from")), date_to=parse_date(q.get("to")),
                       team=q.get("team") or None, agent_id=agent, item_id=q.get("item") or None,
                       flag=q.get("flag") or None, below=below, flagged_only=flagged_only,
                       include_failed=q.get("failed") == "1", threshold=h.app.cfg.threshold)


def _page(h, rows: list) -> tuple[list, int]:
    try:
        page = max(1, int(h.query.get("page") or 1))
    except ValueError:
        page = 1
    n = h.app.cfg.per_page
    return rows[(page - 1) * n: page * n], page


def _list(h, *, flagged_only: bool, api: bool) -> None:
    rows = h.app.store.query(_filter(h, flagged_only))
    shown, page = _page(h, rows)
    if api:
        th = h.app.cfg.threshold
        return h.json({"total": len(rows), "page": page, "per_page": h.app.cfg.per_page,
                       "sessions": [s.summary(th) for s in shown]})
    store = h.app.store
    agents = [h.user.agent_id] if h.user.role == "agent" else store.agents()
    title, action = ("复核队列", "/queue") if flagged_only else ("会话列表", "/sessions")
    h.html(pages.list_page(title=title, action=action, rows=shown, total_rows=len(rows), page=page,
                           per_page=h.app.cfg.per_page, params=h.query, teams=store.teams(), agents=agents,
                           items=store.item_names(), threshold=h.app.cfg.threshold, user=h.user, csrf=h.csrf))


def queue_page(h) -> None:
    _list(h, flagged_only=True, api=False)


def queue_api(h) -> None:
    _list(h, flagged_only=True, api=True)


def sessions_page(h) -> None:
    _list(h, flagged_only=False, api=False)


def sessions_api(h) -> None:
    _list(h, flagged_only=False, api=True)


# -- one session -------------------------------------------------------------------------------------
def _session(h, call_id: str) -> SessionView:
    s = h.app.store.get(call_id)
    if s is None or not can_see(h.user, s.agent_id):
        if s is not None:
            log.warning("user %s (%s) denied call %s of agent %s", h.user.username, h.user.role, call_id, s.agent_id)
        raise HttpError(404, f"会话 {call_id} 不存在或无权查看")
    return s


def session_page(h, call_id: str) -> None:
    s = _session(h, call_id)
    hist = h.app.db.history(call_id, s.run_id)
    h.html(pages.session_page(s, h.app.store.utterances(call_id), current_state(hist),
                              hist, threshold=h.app.cfg.threshold, user=h.user,
                              csrf=h.csrf, nonce=h.nonce))


def session_api(h, call_id: str) -> None:
    s = _session(h, call_id)
    hist = h.app.db.history(call_id, s.run_id)
    state = current_state(hist)
    items = [{"item_id": i.item_id, "item_name": i.item_name, "points": i.points, "max_points": i.max_points,
              "applicable": i.applicable, "failed": i.failed, "vetoed": i.vetoed, "evidence": list(i.evidence),
              "review": state.get(i.item_id)} for i in s.items]
    h.json({**s.summary(h.app.cfg.threshold), "source_kind": s.kind, "duration_s": s.duration_s,
            "role_confidence": s.role_confidence, "items": items, "utterances": h.app.store.utterances(call_id),
            "run_id": s.run_id, "history": hist})


def reviews_api(h, call_id: str) -> None:
    run_id = _session(h, call_id).run_id
    hist = h.app.db.history(call_id, run_id)
    h.json({"call_id": call_id, "run_id": run_id, "history": hist, "current": current_state(hist)})


def audio(h, call_id: str) -> None:
    s = _session(h, call_id)
    path = resolve_audio(s.source_path, h.app.cfg.audio_roots) if s.kind == "audio" else None
    if path is None:
        log.warning("no audio served for %s (kind=%s, source=%s)", call_id, s.kind, s.source_path)
        raise HttpError(404, "音频不可用 / audio not available")
    size = file_size(path)
    try:
        rng = parse_range(h.headers.get("Range"), size)
    except ValueError:
        h._headers(416, "text/plain", 0, {"Content-Range": f"bytes */{size}"})
        return
    start, end = rng if rng else (0, size - 1)
    extra = {"Accept-Ranges": "bytes"}
    if rng:
        extra["Content-Range"] = f"bytes {start}-{end}/{size}"
    h._headers(206 if rng else 200, content_type(path), end - start + 1, extra)
    for chunk in iter_file(path, start, end - start + 1):
        h.wfile.write(chunk)


# -- reviews -----------------------------------------------------------------------------------------
def _points(value, max_points: float) -> Optional[float]:
    if value in (None, ""):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HttpError(400, "new_points must be a number") from None
    if not 0 <= v <= max_points:
        raise HttpError(400, f"new_points must lie in 0..{max_points:g}")
    return v


def _add_review(h, call_id: str) -> tuple[int, SessionView]:
    s = _session(h, call_id)
    form = h.body()
    action = str(form.get("action") or "")
    if action not in ACTION_PERMISSION:
        raise HttpError(400, "action must be confirm, override, appeal or appeal_decision")
    if not allowed(h.user, ACTION_PERMISSION[action]):
        raise HttpError(403, f"role {h.user.role} may not {action}")
    item = next((i for i in s.items if i.item_id == form.get("item_id")), None)
    if item is None or not item.applicable:
        raise HttpError(400, f"unknown or not applicable item {form.get('item_id')!r}")
    comment = str(form.get("comment") or "").strip()[:2000]
    new = _points(form.get("new_points"), item.max_points)
    latest = h.app.db.current(call_id, s.run_id).get(item.item_id)
    if action == "confirm":
        new = item.points
    elif action in ("override", "appeal_decision") and new is None:
        raise HttpError(400, f"{action} needs new_points")
    if action != "confirm" and not comment:
        raise HttpError(400, f"{action} needs a comment (复核意见)")
    if action == "appeal_decision" and (latest is None or latest["action"] != "appeal"):
        raise HttpError(409, "no pending appeal on this item")
    if action == "appeal" and latest is not None and latest["action"] == "appeal":
        raise HttpError(409, "an appeal on this item is already pending")
    if action in ("confirm", "override") and latest is not None and latest["action"] == "appeal":
        raise HttpError(409, "an appeal on this item is pending; only the final decision (admin) may follow")
    rid = h.app.db.add_review(call_id=call_id, item_id=item.item_id, action=action, machine_points=item.points,
                              new_points=new, comment=comment, user=h.user, run_id=s.run_id)
    return rid, s


def review_form(h, call_id: str) -> None:
    _add_review(h, call_id)
    h.redirect(pages.session_link(call_id) + "#item-saved")


def review_api(h, call_id: str) -> None:
    rid, s = _add_review(h, call_id)
    h.json({"id": rid, "current": h.app.db.current(call_id, s.run_id)}, 201)


# -- calibration, reports, export, users -------------------------------------------------------------
def _calibration(h) -> list[dict]:
    """Only reviews of each call's current run: a re-run call's old verdicts judged other machine points."""
    return h.app.db.calibration({cid: s.run_id for cid, s in h.app.store.sessions().items()})


def calibration_page(h) -> None:
    h.html(pages.calibration_page(_calibration(h), h.app.store.item_names(), h.user, h.csrf))


def calibration_api(h) -> None:
    h.json({"items": _calibration(h)})


def _report(h) -> dict:
    level = h.query.get("level") or "center"
    if level not in LEVELS:
        raise HttpError(400, f"level must be one of {', '.join(LEVELS)}")
    flt = _filter(h, flagged_only=False)
    return build_report(h.app.store.query(flt), level, h.app.cfg.threshold)


def reports_page(h) -> None:
    rep = _report(h)
    links = " · ".join(f'<a href="/reports?level={lv}">{zh}</a>' for lv, zh in
                       (("center", "中心"), ("team", "班组"), ("agent", "坐席")))
    h.html(pages.layout("报表", f"<h2>质检报表</h2><p>{links}</p>" + report_body(rep), h.user, h.csrf))


def reports_api(h) -> None:
    h.json(_report(h))


def export_page(h) -> None:
    h.html(pages.export_page(h.app.store.agents(), h.app.store.teams(), h.user, h.csrf))


def _query_date(h, name: str):
    value = h.query.get(name) or ""
    day = parse_date(value)
    if value and (day is None or len(value) != 10):
        raise HttpError(400, f"{name} must be a date YYYY-MM-DD")
    return day


def export_download(h) -> None:
    from qc_pipeline.web.export import ExportOptions, export_cases

    if not h.query.get("agent"):
        raise HttpError(400, "choose an agent (one case pack per download)")
    fmt = h.query.get("format") or "csv"
    if fmt not in ("csv", "xlsx"):
        raise HttpError(400, "format must be csv or xlsx (html packs with audio: use `qc-pipeline export`)")
    try:
        below = float(h.query.get("below") or 60)
    except ValueError:
        raise HttpError(400, "below must be a number") from None
    opts = ExportOptions(below=below, team=h.query.get("team") or None, agent_id=h.query.get("agent") or None,
                         since=_query_date(h, "since"), until=_query_date(h, "until"), fmt=fmt)
    with tempfile.TemporaryDirectory(prefix="qc-export-") as tmp:
        try:
            res = export_cases(h.app.store, tmp, opts)
        except SetupError as exc:
            raise HttpError(404, str(exc)) from None
        path = res.files[0]
        data = Path(path).read_bytes()
    ctype = "text/csv; charset=utf-8" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    h.send_bytes(200, data, ctype, {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.name)}"})


def users_page(h) -> None:
    h.html(pages.users_page(h.app.db.users(), h.user, h.csrf))


def users_add(h) -> None:
    f = h.body()
    try:
        h.app.db.add_user(str(f.get("username") or "").strip(), str(f.get("password") or ""),
                          str(f.get("role") or ""), str(f.get("agent_id") or "").strip() or None)
    except SetupError as exc:
        return h.html(pages.users_page(h.app.db.users(), h.user, h.csrf, str(exc)), 400)
    h.redirect("/users")


def users_api(h) -> None:
    h.json({"users": [{"username": u.username, "role": u.role, "agent_id": u.agent_id} for u in h.app.db.users()]})
