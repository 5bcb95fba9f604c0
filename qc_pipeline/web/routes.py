"""Route table and the handlers of the QA pages (login, lists, one session, reviews, workflow).

The wrapper (:func:`qc_pipeline.web.app.page_route`) has checked login, the route's permission and the
CSRF token of POSTs; handlers add the per-object checks (an agent sees only own calls, per-action
permissions, the claim).  Admin pages are in :mod:`qc_pipeline.web.admin`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
import secrets
from typing import Optional
from urllib.parse import quote, urlencode, urlsplit

from markupsafe import Markup
from starlette.responses import FileResponse

from qc_pipeline.sentiment import escalation_cues
from qc_pipeline.web import admin
from qc_pipeline.web.access import ACTION_PERMISSION, HOME, allowed, can_see
from qc_pipeline.web.app import COOKIE, LOGIN_COOKIE, Ctx, HttpError, page_route, set_cookie
from qc_pipeline.web.audio import content_type, resolve_audio
from qc_pipeline.web.db import current_state
from qc_pipeline.web.views import SORTS, ListQuery, SessionView, evidence_keywords, evidence_quote, fmt_ts, \
    local_time, parse_week

log = logging.getLogger(__name__)

ROLE_ZH = {"reviewer": "质检员", "trainer": "培训师", "agent": "坐席", "admin": "管理员"}
ACTION_ZH = {"confirm": "确认", "override": "改判", "appeal": "申诉", "appeal_decision": "申诉裁定",
             "claim": "领取", "release": "释放", "done": "完成"}
STATE_ZH = {"pending": "待复核", "claimed": "复核中", "done": "已复核"}
FLAG_ZH = {"low_score": "低分", "veto": "否决", "compliance_hit": "合规命中", "customer_emotion_low": "客户情绪低",
           "low_role_confidence": "角色置信度低", "escalation_risk": "升级风险", "attitude_issue": "态度问题",
           "low_asr_confidence": "识别置信度低", "llm_error": "大模型未判定", "over_duration_target": "通话超时长",
           "truncated_audio": "音频截断", "mono_no_diarizer": "单声道未分离", "channel_map_suspect": "声道疑似颠倒"}
DRILL = {"week": "周", "over_target": FLAG_ZH["over_duration_target"], "resolved": "已解决"}  # report links' filters
NAV = (("/queue", "复核队列", "queue"), ("/sessions", "会话", "sessions"), ("/appeals", "申诉", "appeals"),
       ("/calibration", "校准", "calibration"), ("/reports", "报表", "reports"), ("/export", "辅导导出", "export"),
       ("/users", "用户", "users"), ("/audit", "审计", "audit"))


def session_link(call_id: str) -> str:
    return "/sessions/" + quote(call_id, safe="")


def highlight(text: str, keywords: list[str]) -> Markup:
    """Escape ``text`` and wrap each keyword occurrence in <mark> (longest keywords first)."""
    spans: list[tuple[int, int]] = []
    for kw in sorted(set(keywords), key=len, reverse=True):
        start = text.find(kw)
        while start >= 0:
            end = start + len(kw)
            if all(end <= a or start >= b for a, b in spans):
                spans.append((start, end))
            start = text.find(kw, end)
    out, pos = [], 0
    for a, b in sorted(spans):
        out.append(Markup.escape(text[pos:a]) + Markup("<mark>") + Markup.escape(text[a:b]) + Markup("</mark>"))
        pos = b
    return Markup("").join(out) + Markup.escape(text[pos:])


def setup_templates(env) -> None:
    env.globals.update(ROLE_ZH=ROLE_ZH, ACTION_ZH=ACTION_ZH, STATE_ZH=STATE_ZH, FLAG_ZH=FLAG_ZH, NAV=NAV,
                       DRILL=DRILL, allowed=allowed, session_link=session_link)
    env.filters.update(local=local_time, ts=fmt_ts, quote_=evidence_quote,
                       num=lambda v: "" if v is None else f"{v:g}",
                       qs=lambda d: urlencode({k: v for k, v in d.items() if v not in (None, "")}),
                       without=lambda d, *keys: {k: v for k, v in d.items() if k not in keys})


# -- login -------------------------------------------------------------------------------------------
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")


def safe_next(url: str) -> str:
    """Only a same-site path: no scheme/host, no ``//`` or ``/\\`` (browsers read both as a host), no
    whitespace, control characters (header injection) or non-ASCII."""
    url = url or "/"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not _LOCAL_PATH.fullmatch(url):
        return "/"
    return url


def _login_page(ctx: Ctx, error: str = "", status: int = 200, next_url: str = "/"):
    token = secrets.token_urlsafe(24)
    resp = ctx.render("login.html", status, login_csrf=token, error=error, next_url=safe_next(next_url))
    set_cookie(resp, LOGIN_COOKIE, token)
    return resp


def login_form(ctx: Ctx):
    if ctx.login is not None:
        return ctx.redirect(safe_next(ctx.query["next"]) if ctx.query.get("next") else HOME[ctx.user.role])
    return _login_page(ctx, next_url=ctx.query.get("next", "/"))


def login(ctx: Ctx):
    form = ctx.form()
    given, expected = str(form.get("csrf") or ""), ctx.cookie(LOGIN_COOKIE) or ""
    if not given or not expected or not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        return _login_page(ctx, "表单已过期，请重试 (CSRF check failed)", 403)
    name, password = str(form.get("username") or "")[:200], str(form.get("password") or "")
    nxt = str(form.get("next") or "/")
    ctx.audit_user = (name, "-")
    throttle = ctx.app.throttle
    if not throttle.try_acquire(name, ctx.address):  # reserved before hashing: parallel attempts count too
        wait = max(1, int(throttle.retry_after(name, ctx.address) / 60 + 0.999))
        ctx.audit_detail["result"] = "locked"
        log.warning("login for %r from %s refused: locked out after repeated failures", name, ctx.address)
        return _login_page(ctx, f"失败次数过多，请 {wait} 分钟后再试", 429, nxt)
    try:
        user = ctx.app.db.check_password(name, password)
    except BaseException:
        throttle.release(name, ctx.address)
        raise
    if user is None:
        throttle.failed(name, ctx.address)
        ctx.audit_detail["result"] = "failed"
        return _login_page(ctx, "用户名或密码错误（或账号已停用）", 401, nxt)
    throttle.succeeded(name, ctx.address)
    ctx.login = ctx.app.db.create_session(user, ctx.address)
    ctx.audit_detail["result"] = "ok"
    target = safe_next(nxt)
    resp = ctx.redirect(HOME[user.role] if target == "/" else target)
    set_cookie(resp, COOKIE, ctx.login.token)
    set_cookie(resp, LOGIN_COOKIE, "", 0)
    return resp


def logout(ctx: Ctx):
    ctx.app.db.end_session(ctx.login.token)
    resp = ctx.redirect("/login")
    set_cookie(resp, COOKIE, "", 0)
    return resp


def home(ctx: Ctx):
    return ctx.redirect(HOME[ctx.user.role])


# -- lists -------------------------------------------------------------------------------------------
def _yes_no(ctx: Ctx, name: str) -> Optional[bool]:
    value = ctx.query.get(name)
    if value not in (None, "1", "0"):
        raise HttpError(400, f"{name} must be 1 or 0")
    return None if value is None else value == "1"


def _summary_value(ctx: Ctx, name: str, facet: str) -> Optional[str]:
    """A call type / reason filter: one of the values stored in the summaries (400 naming the known ones)."""
    value = ctx.query.get(name)
    known = ctx.app.model.distinct(facet) if value is not None else []
    if value is not None and value not in known:
        raise HttpError(400, f"{name}: no call has {value!r}; "
                        + (f"known: {'、'.join(known)}" if known else "these results have no call summaries"))
    return value


def list_query(ctx: Ctx, flagged_only: bool) -> ListQuery:
    q = ctx.query
    agent = q.get("agent")
    if ctx.user.role == "agent":
        agent = ctx.user.agent_id or "\0"  # agents are pinned to their own id, whatever the URL says
    try:
        below = float(q["below"]) if q.get("below") else None
        page = int(q["page"]) if q.get("page") else None
    except ValueError:
        raise HttpError(400, "below and page must be numbers") from None
    sort = q.get("sort") or ("score" if flagged_only else "time")
    if sort not in SORTS:
        raise HttpError(400, f"sort must be one of {', '.join(SORTS)}")
    state = q.get("state")
    if state not in (None, "pending", "claimed", "done", "mine"):
        raise HttpError(400, "state must be pending, claimed, done or mine")
    date_from, date_to = ctx.date_range()
    if q.get("week"):
        try:
            parse_week(q["week"])
        except ValueError as exc:
            raise HttpError(400, f"week: {exc}") from None
    return ListQuery(date_from=date_from, date_to=date_to, team=q.get("team"), agent_id=agent,
                     item_id=q.get("item"), flag=q.get("flag"), below=below, flagged_only=flagged_only,
                     include_failed=q.get("failed") == "1", q=(q.get("q") or "").strip() or None,
                     text=(q.get("text") or "").strip() or None, week=q.get("week"),
                     call_type=_summary_value(ctx, "type", "call_type"),
                     call_reason=_summary_value(ctx, "reason", "call_reason"), resolved=_yes_no(ctx, "resolved"),
                     over_target=_yes_no(ctx, "over_target"), state=state, user=ctx.user.username, sort=sort,
                     desc=(q.get("dir") == "desc") if q.get("dir") else (sort == "time" and not flagged_only),
                     after=q.get("after"), before=q.get("before"), last=q.get("last") == "1", page=page,
                     per_page=ctx.app.cfg.per_page)


def _list(ctx: Ctx, flagged_only: bool):
    api = ctx.wants_json
    try:
        query = list_query(ctx, flagged_only)
        page = ctx.app.model.page(query)
    except HttpError as exc:
        if api:
            raise
        error, query, page = exc.message, None, None
    except ValueError as exc:  # a bad cursor
        raise HttpError(400, str(exc)) from None
    else:
        error = ""
    ctx.audit_detail["n_rows"] = len(page.rows) if page else 0
    if api:
        return ctx.json({"total": page.total, "page": page.page, "n_pages": page.n_pages,
                         "per_page": query.per_page, "next": page.next, "prev": page.prev,
                         "sessions": [s.summary() for s in page.rows]})
    model = ctx.app.model
    title, action = ("复核队列", "/queue") if flagged_only else ("会话列表", "/sessions")
    params = {k: v for k, v in ctx.query.items() if k not in ("after", "before", "last", "page")}
    return ctx.render("list.html", 400 if error else 200, title=title, action=action, page=page, error=error,
                      params=params, teams=model.distinct("team"), flags=model.flags(),
                      agents=[ctx.user.agent_id] if ctx.user.role == "agent" else model.distinct("agent_id"),
                      items=model.item_names(), progress=model.progress, flagged_only=flagged_only,
                      call_types=model.distinct("call_type"), call_reasons=model.distinct("call_reason"))


def queue_page(ctx: Ctx):
    return _list(ctx, flagged_only=True)


def sessions_page(ctx: Ctx):
    return _list(ctx, flagged_only=False)


# -- one session -------------------------------------------------------------------------------------
def load_session(ctx: Ctx, call_id: str, items: bool = True) -> SessionView:
    s = ctx.app.model.session(call_id) if items else ctx.app.model.get(call_id)
    if s is None or not can_see(ctx.user, s.agent_id):
        if s is not None:
            log.warning("user %s (%s) denied call %s of agent %s", ctx.user.username, ctx.user.role, call_id,
                        s.agent_id)
            ctx.audit_detail["denied"] = True
        raise HttpError(404, f"会话 {call_id} 不存在或无权查看")
    return s


def _state(ctx: Ctx, s: SessionView) -> tuple[str, Optional[str]]:
    return ctx.app.db.workflow_state(s.call_id, s.run_id)


def reviewed_points(item, review: Optional[dict]) -> float:
    """The item's points after its latest review (``current_state``), else the machine's."""
    return review["points"] if review and review.get("points") is not None else item.points


def appeal_deadline(ctx: Ctx, s: SessionView, review: Optional[dict]) -> Optional[dt.datetime]:
    base = s.processed_at
    if review and review["action"] in ("confirm", "override"):
        base = max(base, dt.datetime.fromisoformat(review["created_at"])) if base else \
            dt.datetime.fromisoformat(review["created_at"])
    return base + dt.timedelta(days=ctx.app.cfg.appeal_days) if base else None


def session_page(ctx: Ctx, call_id: str, error: str = "", kept: Optional[dict] = None, status: int = 200):
    s = load_session(ctx, call_id)
    hist = ctx.app.db.history(call_id, s.run_id)
    state = current_state(hist)
    wf_state, wf_user = _state(ctx, s)
    utts = ctx.app.model.utterances(s)
    marks: dict[int, list[str]] = {}
    for it in s.items:
        for ev in it.evidence:
            if ev.get("turn_index") is not None:
                marks.setdefault(ev["turn_index"], []).extend(evidence_keywords(ev.get("text")))
    escalation_turns = {u["turn_index"]: escalation_cues(u["text"]) for u in utts if u["role"] == "customer"} \
        if s.escalation else {}
    lines = [{**u, "html": highlight(u["text"], marks.get(u["turn_index"], [])),
              "evidence": u["turn_index"] in marks, "cues": escalation_turns.get(u["turn_index"]) or []}
             for u in utts]
    actions = [a for a, perm in ACTION_PERMISSION.items() if allowed(ctx.user, perm)]
    now = dt.datetime.now(dt.timezone.utc)
    items = []
    for it in s.items:
        st = state.get(it.item_id)
        deadline = appeal_deadline(ctx, s, st)
        items.append({"it": it, "review": st, "lost": it.lost_at(reviewed_points(it, st)),
                      "deadline": deadline, "appealable": _appeal_problem(ctx, s, it, hist, st, now) is None})
    return ctx.render("session.html", status, s=s, lines=lines, items=items, history=hist, actions=actions,
                      wf_state=wf_state, wf_user=wf_user, error=error, kept=kept or {},
                      vetoing=[i for i in s.items if i.vetoed] or [i for i in s.items if i.item_id in s.veto_items],
                      audio=s.kind == "audio")


def session_api(ctx: Ctx, call_id: str):
    s = load_session(ctx, call_id)
    hist = ctx.app.db.history(call_id, s.run_id)
    state = current_state(hist)
    wf_state, wf_user = _state(ctx, s)
    items = [{"item_id": i.item_id, "item_name": i.item_name, "points": i.points, "max_points": i.max_points,
              "applicable": i.applicable, "failed": i.failed, "vetoed": i.vetoed, "evidence": list(i.evidence),
              "review": state.get(i.item_id)} for i in s.items]
    return ctx.json({**s.summary(), "state": wf_state, "state_user": wf_user, "source_kind": s.kind,
                     "duration_s": s.duration_s, "role_confidence": s.role_confidence, "veto_items": list(s.veto_items),
                     "items": items, "utterances": ctx.app.model.utterances(s), "run_id": s.run_id, "history": hist})


def reviews_api(ctx: Ctx, call_id: str):
    s = load_session(ctx, call_id, items=False)
    hist = ctx.app.db.history(call_id, s.run_id)
    return ctx.json({"call_id": call_id, "run_id": s.run_id, "history": hist, "current": current_state(hist)})


def audio(ctx: Ctx, call_id: str):
    s = load_session(ctx, call_id, items=False)
    path = resolve_audio(s.source_path, ctx.app.cfg.audio_roots) if s.kind == "audio" else None
    if path is None:
        log.warning("no audio served for %s (kind=%s, source=%s)", call_id, s.kind, s.source_path)
        raise HttpError(404, "音频不可用 / audio not available")
    ctx.audit_target = "recording:" + call_id
    ctx.audit_detail["range"] = ctx.request.headers.get("range") or "all"
    return FileResponse(path, media_type=content_type(path), headers={"Cache-Control": "no-store"})


# -- reviews and workflow ----------------------------------------------------------------------------
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


def _appeal_problem(ctx: Ctx, s: SessionView, item, hist: list[dict], latest: Optional[dict],
                    now: dt.datetime) -> Optional[str]:
    """Why this item cannot be appealed now (None: it can)."""
    if not item.applicable:
        return "item not applicable"
    if not item.lost_at(reviewed_points(item, latest)):
        return "only items that lost points can be appealed"
    if any(h["action"] == "appeal" and h["item_id"] == item.item_id and h["current_run"] for h in hist):
        return "this item was appealed already (one appeal per item)"
    deadline = appeal_deadline(ctx, s, latest)
    if deadline is not None and now > deadline:
        return f"the appeal deadline ({local_time(deadline, ctx.app.cfg.tz)}) has passed"
    return None


def _add_review(ctx: Ctx, call_id: str) -> tuple[int, SessionView]:
    s = load_session(ctx, call_id)
    form = ctx.form()
    action = str(form.get("action") or "")
    if action not in ACTION_PERMISSION:
        raise HttpError(400, "action must be confirm, override, appeal or appeal_decision")
    if not allowed(ctx.user, ACTION_PERMISSION[action]):
        raise HttpError(403, f"role {ctx.user.role} may not {action}")
    item = next((i for i in s.items if i.item_id == form.get("item_id")), None)
    if item is None or not item.applicable:
        raise HttpError(400, f"unknown or not applicable item {form.get('item_id')!r}")
    comment = str(form.get("comment") or "").strip()[:2000]
    new = _points(form.get("new_points"), item.max_points)
    db = ctx.app.db
    hist = db.history(call_id, s.run_id)
    latest = current_state(hist).get(item.item_id)
    if action == "confirm":
        new = item.points
    elif action in ("override", "appeal_decision") and new is None:
        raise HttpError(400, f"{action} needs new_points")
    if action != "confirm" and not comment:
        raise HttpError(400, f"{action} needs a comment (复核意见)")
    if action == "appeal_decision" and (latest is None or latest["action"] != "appeal"):
        raise HttpError(409, "no pending appeal on this item")
    if action == "appeal":
        problem = _appeal_problem(ctx, s, item, hist, latest, dt.datetime.now(dt.timezone.utc))
        if problem:
            raise HttpError(409, problem)
    if action in ("confirm", "override"):
        if latest is not None and latest["action"] == "appeal":
            raise HttpError(409, "an appeal on this item is pending; only the final decision (admin) may follow")
        _claim_for_review(ctx, s)
    rid = db.add_review(call_id=call_id, item_id=item.item_id, action=action, machine_points=item.points,
                        new_points=new, comment=comment, user=ctx.user, run_id=s.run_id)
    ctx.audit_detail.update({"review_id": rid, "item_id": item.item_id, "action": action, "new_points": new})
    return rid, s


def _claim_for_review(ctx: Ctx, s: SessionView) -> None:
    """A review needs the call claimed by the reviewer; a pending (or done) call is claimed on the spot."""
    state, who = _state(ctx, s)
    if state == "claimed" and who != ctx.user.username:
        raise HttpError(409, f"claimed by {who}; ask them (or an admin) to release it first")
    if state != "claimed":
        _workflow(ctx, s, "claim")


def _workflow(ctx: Ctx, s: SessionView, action: str) -> None:
    ctx.app.db.workflow_event(s.call_id, s.run_id, action, ctx.user)
    state, who = _state(ctx, s)
    ctx.app.model.set_states([(s.call_id, s.run_id, state, who)])
    ctx.audit_detail.update({"workflow": action, "state": state})


def review(ctx: Ctx, call_id: str):
    if ctx.wants_json:
        rid, s = _add_review(ctx, call_id)
        return ctx.json({"id": rid, "current": ctx.app.db.current(call_id, s.run_id)}, 201)
    try:
        _add_review(ctx, call_id)
    except HttpError as exc:
        if exc.status in (400, 409):  # the page again, with the message and what was typed
            return session_page(ctx, call_id, error=exc.message, kept=dict(ctx.form()), status=exc.status)
        raise
    return ctx.redirect(session_link(call_id) + "#item-saved")


def workflow(ctx: Ctx, call_id: str):
    s = load_session(ctx, call_id, items=False)
    action = str(ctx.form().get("action") or "")
    state, who = _state(ctx, s)
    admin_user = ctx.user.role == "admin"
    if action == "claim":
        if state == "claimed":
            raise HttpError(409, f"already claimed by {who}")
    elif action in ("release", "done"):
        if state != "claimed" or (who != ctx.user.username and not (admin_user and action == "release")):
            raise HttpError(409, f"only the reviewer who claimed the call can mark it {action}"
                            if state == "claimed" else "the call is not claimed")
    else:
        raise HttpError(400, "action must be claim, release or done")
    _workflow(ctx, s, action)
    if ctx.wants_json:
        st, by = _state(ctx, s)
        return ctx.json({"call_id": call_id, "state": st, "user": by})
    nxt = safe_next(str(ctx.form().get("next") or ""))
    return ctx.redirect(nxt if nxt != "/" else session_link(call_id))


def status(ctx: Ctx):
    p = ctx.app.model.progress
    return ctx.json({"complete": p.complete, "parts_pending": p.parts_pending, "parts_known": p.parts_known,
                     "sessions": ctx.app.model.count(), "last_error": p.last_error})


ID = "{call_id}"
ROUTES = [
    page_route("/login", login_form, None, audit="login_form"),
    page_route("/login", login, None, methods=("POST",)),
    page_route("/logout", logout, "login", methods=("POST",)),
    page_route("/", home, "login"),
    page_route("/api/status", status, "login", audit="status"),
    page_route("/queue", queue_page, "queue", audit="list_queue"),
    page_route("/api/queue", queue_page, "queue", audit="list_queue"),
    page_route("/sessions", sessions_page, "sessions", audit="list_sessions"),
    page_route("/api/sessions", sessions_page, "sessions", audit="list_sessions"),
    page_route(f"/sessions/{ID}", session_page, "sessions", audit="view_session"),
    page_route(f"/api/sessions/{ID}", session_api, "sessions", audit="view_session"),
    page_route(f"/api/sessions/{ID}/audio", audio, "sessions", audit="stream_recording"),
    page_route(f"/api/sessions/{ID}/reviews", reviews_api, "sessions", audit="view_reviews"),
    page_route(f"/sessions/{ID}/review", review, "sessions", methods=("POST",)),
    page_route(f"/api/sessions/{ID}/reviews", review, "sessions", methods=("POST",), audit="review"),
    page_route(f"/sessions/{ID}/workflow", workflow, "workflow", methods=("POST",)),
    page_route(f"/api/sessions/{ID}/workflow", workflow, "workflow", methods=("POST",), audit="workflow"),
    *admin.ROUTES,
]
