"""The review app on Starlette: routes, the per-request context, login/permission/CSRF checks, audit.

Every route names the permission it needs (deny by default, :mod:`qc_pipeline.web.access`); a route's
handler runs in the thread pool with a :class:`Ctx` after the checks.  Each request of a logged-in user
(and each login attempt) leaves one audit row.  Paths are matched per raw segment
(:class:`SegmentPaths`), so a call id can never add path segments.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, quote, unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from qc_pipeline.text_safety import utf8_safe
from qc_pipeline.web.access import LoginThrottle, allowed
from qc_pipeline.web.audit import AuditLog
from qc_pipeline.web.db import LoginSession, ReviewDB
from qc_pipeline.web.readmodel import ReadModel
from qc_pipeline.web.views import DEFAULT_TZ, parse_date

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
COOKIE = "qc_session"
LOGIN_COOKIE = "qc_login"
TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class AppConfig:
    results: Path
    db_path: Path
    audio_roots: tuple[Path, ...]
    readmodel_path: Optional[Path] = None     # default: next to the review database
    tz: str = DEFAULT_TZ                      # times are shown in this zone
    appeal_days: float = 7.0                  # an agent may appeal an item this long after it was scored/reviewed
    per_page: int = 50
    refresh_s: float = 2.0


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SegmentPaths:
    """ASGI middleware: route on the raw path, segment by segment (``%2F`` inside a call id stays one
    segment; handlers ``unquote`` their path parameters)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            raw = raw.split(b"?", 1)[0].decode("latin-1")
            path = "/".join(quote(unquote(seg), safe="!$&'()*+,;=:@-._~") for seg in raw.split("/"))
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)


class Ctx:
    """One request as the handlers see it."""

    def __init__(self, request: Request, app: "ReviewApp", raw: bytes) -> None:
        self.request, self.app, self.raw = request, app, raw
        self.query = {k: v for k, v in request.query_params.items() if v != ""}
        self.nonce = secrets.token_urlsafe(12)
        self.address = request.client.host if request.client else ""
        self.login: Optional[LoginSession] = None
        self._form: Optional[dict] = None
        self.audit_call: Optional[str] = None
        self.audit_target: Optional[str] = None
        self.audit_detail: dict = {}
        self.audit_user: Optional[tuple[str, str]] = None   # (name, role) for requests without a login

    @property
    def user(self):
        return self.login.user if self.login else None

    @property
    def csrf(self) -> str:
        return self.login.csrf if self.login else ""

    def cookie(self, name: str) -> Optional[str]:
        return self.request.cookies.get(name)

    def form(self) -> dict:
        if self._form is None:
            ctype = (self.request.headers.get("content-type") or "").split(";")[0].strip()
            try:
                if ctype == "application/json":
                    data = json.loads(self.raw.decode("utf-8") or "{}")
                    if not isinstance(data, dict):
                        raise ValueError("JSON body must be an object")
                    data = utf8_safe(data)  # "\ud800" escapes decode to lone surrogates SQLite cannot store
                else:
                    data = {k: v[-1] for k, v in parse_qs(self.raw.decode("utf-8"), keep_blank_values=True).items()}
            except (ValueError, UnicodeDecodeError) as exc:
                raise HttpError(400, f"bad request body: {exc}") from None
            self._form = data
        return self._form

    def date(self, name: str):
        """The query parameter ``name`` as a date (None when absent); 400 naming it when not YYYY-MM-DD."""
        try:
            return parse_date(self.query.get(name))
        except ValueError as exc:
            raise HttpError(400, f"{name}: {exc}") from None

    def date_range(self) -> tuple:
        """``from`` and ``to`` as dates (either may be None); 400 when from is after to."""
        date_from, date_to = self.date("from"), self.date("to")
        if date_from and date_to and date_from > date_to:
            raise HttpError(400, "from must not be after to")
        return date_from, date_to

    @property
    def wants_json(self) -> bool:
        return self.request.url.path.startswith("/api/")

    # -- responses ------------------------------------------------------------------------------------
    def render(self, template: str, status: int = 200, **context) -> HTMLResponse:
        html = self.app.templates.get_template(template).render(user=self.user, csrf=self.csrf, nonce=self.nonce,
                                                                 tz=self.app.cfg.tz, **context)
        return HTMLResponse(html, status)

    def json(self, obj, status: int = 200) -> Response:
        return Response(json.dumps(obj, ensure_ascii=False, default=str), status,
                        media_type="application/json; charset=utf-8")

    def redirect(self, location: str) -> RedirectResponse:
        return RedirectResponse(location, 303)

    def error(self, status: int, message: str) -> Response:
        if self.wants_json:
            return self.json({"error": message, "status": status}, status)
        title = {401: "请先登录", 403: "无权访问", 404: "未找到", 409: "冲突", 429: "请稍后再试"}.get(status, "错误")
        return self.render("message.html", status, title=title, text=message)


def set_cookie(resp: Response, name: str, value: str, max_age: Optional[int] = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict")


def _secure(resp: Response, nonce: str) -> Response:
    h = resp.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "same-origin"
    h["Cache-Control"] = "no-store"
    h["Content-Security-Policy"] = (f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' "
                                    "'unsafe-inline'; img-src 'self' data:; media-src 'self'; form-action 'self'; "
                                    "frame-ancestors 'none'")
    return resp


def page_route(path: str, handler: Callable, permission: Optional[str], methods=("GET",), audit: Optional[str] = None):
    """A Starlette route running ``handler(ctx, **params)`` after the login, permission and CSRF checks.

    ``permission`` None: public; "login": any logged-in user.  ``audit`` names the audit action (default:
    the handler's name); every request of a logged-in user is audited, status included.
    """
    action = audit or handler.__name__
    is_api = path.startswith("/api/")

    async def endpoint(request: Request) -> Response:
        app: ReviewApp = request.app.state.review
        raw = b""
        if request.method == "POST":
            try:
                size = int(request.headers.get("content-length") or 0)
            except ValueError:
                size = MAX_BODY + 1
            if size > MAX_BODY:
                return PlainTextResponse("request body too large", 413)
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_BODY:
                    return PlainTextResponse("request body too large", 413)
        ctx = Ctx(request, app, raw)
        params = {k: unquote(v) for k, v in request.path_params.items()}
        return await run_in_threadpool(_run, ctx, handler, permission, params, action, is_api)

    return Route(path, endpoint, methods=list(methods), name=action)


def _run(ctx: Ctx, handler: Callable, permission: Optional[str], params: dict, action: str, is_api: bool) -> Response:
    t0 = time.perf_counter()
    app = ctx.app
    ctx.login = app.db.get_session(ctx.cookie(COOKIE))
    resp: Response
    try:
        if permission is not None:
            if ctx.login is None:
                if is_api or ctx.request.method != "GET":
                    raise HttpError(401, "请先登录 / login required")
                target = ctx.request.url.path + (f"?{ctx.request.url.query}" if ctx.request.url.query else "")
                return _secure(ctx.redirect("/login?next=" + quote(target, safe="")), ctx.nonce)
            if not allowed(ctx.user, permission):
                raise HttpError(403, "无权访问 / forbidden for role " + ctx.user.role)
            if ctx.request.method == "POST":
                given = ctx.request.headers.get("x-csrf-token") or str(ctx.form().get("csrf") or "")
                if not given or not hmac.compare_digest(given.encode("utf-8", "replace"), ctx.csrf.encode()):
                    raise HttpError(403, "CSRF token missing or wrong; reload the page")
        resp = handler(ctx, **params)
    except HttpError as exc:
        resp = ctx.error(exc.status, exc.message)
    except Exception:  # a bug or e.g. "database is locked": a 500 for the client, a traceback in the log
        log.exception("%s %s failed", ctx.request.method, ctx.request.url.path)
        resp = ctx.error(500, "internal error")
    who = (ctx.user.username, ctx.user.role) if ctx.user else ctx.audit_user
    if who is not None:
        try:
            app.audit.record(user=who[0], role=who[1], action=action, call_id=ctx.audit_call or params.get("call_id"),
                             target=ctx.audit_target, address=ctx.address, status=resp.status_code,
                             detail={"method": ctx.request.method, "path": ctx.request.url.path,
                                     "query": {k: v for k, v in ctx.query.items() if k not in ("csrf",)},
                                     **ctx.audit_detail})
        except Exception:
            log.exception("audit record failed for %s %s", ctx.request.method, ctx.request.url.path)
            resp = ctx.error(500, "audit trail unavailable; nothing was shown")
    log.debug("%s %s %d %.1f ms", ctx.request.method, ctx.request.url.path, resp.status_code,
              1000 * (time.perf_counter() - t0))
    return _secure(resp, ctx.nonce)


class ReviewApp:
    """Services of one app (review DB, audit, read model, throttle, templates) and its ASGI callable."""

    def __init__(self, cfg: AppConfig) -> None:
        import jinja2

        from qc_pipeline.web import routes

        self.cfg = cfg
        self.db = ReviewDB(cfg.db_path)
        self.audit = AuditLog(cfg.db_path)
        self.model = ReadModel(cfg.results, cfg.readmodel_path or cfg.db_path.with_name("readmodel.duckdb"),
                               tz=cfg.tz, refresh_s=cfg.refresh_s)
        self.throttle = LoginThrottle()
        self.templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        routes.setup_templates(self.templates)
        self._started = False

        @contextlib.asynccontextmanager
        async def lifespan(_app):
            await run_in_threadpool(self.start)
            yield
            await run_in_threadpool(self.stop)

        self.starlette = Starlette(routes=routes.ROUTES, lifespan=lifespan)
        self.starlette.state.review = self
        self.asgi = SegmentPaths(self.starlette)

    def start(self, wait: bool = False) -> None:
        """Mirror the workflow states into the read model and start its background refresh (idempotent)."""
        if self._started:
            return
        self._started = True
        self.model.set_states(self.db.workflow_states(), replace_all=True)
        if wait:
            self.model.refresh()
        self.model.start()

    def stop(self) -> None:
        self.model.stop()
