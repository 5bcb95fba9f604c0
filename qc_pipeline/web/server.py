"""HTTP server of the review app: stdlib ``ThreadingHTTPServer`` + a small deny-by-default router.

Every route names the permission it needs (see :mod:`qc_pipeline.web.access`); routes are
matched on the raw (still percent-encoded) path, so a call id can never add path segments.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, quote, unquote, urlsplit

from qc_pipeline.text_safety import utf8_safe
from qc_pipeline.web import handlers
from qc_pipeline.web.handlers import COOKIE, HttpError
from qc_pipeline.web.access import LoginThrottle, allowed
from qc_pipeline.web.data import ResultsStore
from qc_pipeline.web.db import LoginSession, ReviewDB
from qc_pipeline.web.pages import message_page

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class AppConfig:
    results: Path
    db_path: Path
    audio_roots: tuple[Path, ...]
    threshold: float = 60.0
    per_page: int = 50


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    permission: Optional[str]  # None = public; "login" = any logged-in user
    handler: Callable
    api: bool


def _r(method: str, pattern: str, permission: Optional[str], handler: Callable) -> Route:
    return Route(method, re.compile("^" + pattern + "$"), permission, handler, pattern.startswith("/api/"))


ID = r"([^/]+)"
ROUTES = (
    _r("GET", "/login", None, handlers.login_form),
    _r("POST", "/login", None, handlers.login_submit),
    _r("POST", "/logout", "login", handlers.logout),
    _r("GET", "/", "login", handlers.home),
    _r("GET", "/queue", "queue", handlers.queue_page),
    _r("GET", "/api/queue", "queue", handlers.queue_api),
    _r("GET", "/sessions", "sessions", handlers.sessions_page),
    _r("GET", "/api/sessions", "sessions", handlers.sessions_api),
    _r("GET", "/sessions/" + ID, "sessions", handlers.session_page),
    _r("GET", "/api/sessions/" + ID, "sessions", handlers.session_api),
    _r("GET", "/api/sessions/" + ID + "/audio", "sessions", handlers.audio),
    _r("GET", "/api/sessions/" + ID + "/reviews", "sessions", handlers.reviews_api),
    _r("POST", "/sessions/" + ID + "/review", "sessions", handlers.review_form),
    _r("POST", "/api/sessions/" + ID + "/reviews", "sessions", handlers.review_api),
    _r("GET", "/calibration", "calibration", handlers.calibration_page),
    _r("GET", "/api/calibration", "calibration", handlers.calibration_api),
    _r("GET", "/reports", "reports", handlers.reports_page),
    _r("GET", "/api/reports", "reports", handlers.reports_api),
    _r("GET", "/export", "export", handlers.export_page),
    _r("GET", "/export/download", "export", handlers.export_download),
    _r("GET", "/users", "users", handlers.users_page),
    _r("POST", "/users", "users", handlers.users_add),
    _r("GET", "/api/users", "users", handlers.users_api),
)


class App:
    def __init__(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self.store = ResultsStore(cfg.results)
        self.db = ReviewDB(cfg.db_path)
        self.throttle = LoginThrottle()

    def make_server(self, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
        app = self

        class Handler(RequestHandler):
            pass

        Handler.app = app
        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        return server


class RequestHandler(BaseHTTPRequestHandler):
    app: App
    server_version = "qc-review"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections give their thread back

    # -- plumbing ------------------------------------------------------------------------------------
    def log_message(self, fmt: str, *args) -> None:  # route http.server's stderr lines to logging
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        t0 = time.perf_counter()
        parts = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.nonce = secrets.token_urlsafe(12)
        self._body: Optional[dict] = None  # the handler object lives as long as the keep-alive connection
        self._raw = b""
        self.login: Optional[LoginSession] = self.app.db.get_session(self.cookie(COOKIE))
        route, args = None, ()
        for r in ROUTES:
            m = r.pattern.match(parts.path)
            if m and r.method == method:
                route, args = r, tuple(unquote(g) for g in m.groups())
                break
        try:
            if method == "POST":  # always consume the body, so the next request on this connection is intact
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if not 0 <= n <= MAX_BODY:
                    self.close_connection = True
                    raise HttpError(413, "request body too large or bad Content-Length")
                self._raw = self.rfile.read(n) if n else b""
            if route is None:
                raise HttpError(404, "页面不存在 / not found")
            if route.permission is not None:
                if self.login is None:
                    if route.api or method != "GET":
                        raise HttpError(401, "请先登录 / login required")
                    return self.redirect("/login?next=" + quote(self.path, safe=""))
                if not allowed(self.user, route.permission):
                    raise HttpError(403, "无权访问 / forbidden for role " + self.user.role)
                if method == "POST":
                    self.check_csrf()
            route.handler(self, *args)
        except HttpError as exc:
            self.error(exc.status, exc.message, api=route.api if route else parts.path.startswith("/api/"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # a bug or e.g. "database is locked": a 500 for the client, a traceback in the log
            log.exception("%s %s failed", method, parts.path)
            self.close_connection = True
            try:
                self.error(500, "internal error", api=route.api if route else parts.path.startswith("/api/"))
            except Exception:  # headers may already be out
                pass
        finally:
            log.debug("%s %s %.1f ms", method, parts.path, 1000 * (time.perf_counter() - t0))

    @property
    def user(self):
        return self.login.user if self.login else None

    @property
    def csrf(self) -> str:
        return self.login.csrf if self.login else ""

    def cookie(self, name: str) -> Optional[str]:
        c = SimpleCookie()
        try:
            c.load(self.headers.get("Cookie") or "")
        except Exception:
            return None
        return c[name].value if name in c else None

    def body(self) -> dict:
        if self._body is not None:
            return self._body
        raw = self._raw
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if ctype == "application/json":
                data = json.loads(raw.decode("utf-8") or "{}")
                if not isinstance(data, dict):
                    raise ValueError("JSON body must be an object")
                data = utf8_safe(data)  # "\ud800" escapes decode to lone surrogates SQLite cannot store
            else:
                data = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"bad request body: {exc}") from None
        self._body = data
        return data

    def check_csrf(self) -> None:
        given = self.headers.get("X-CSRF-Token") or str(self.body().get("csrf") or "")
        if not given or not hmac.compare_digest(given.encode("utf-8", "replace"), self.csrf.encode()):
            raise HttpError(403, "CSRF token missing or wrong; reload the page")

    # -- responses -----------------------------------------------------------------------------------
    def _headers(self, status: int, ctype: str, length: int, extra: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", f"default-src 'self'; script-src 'nonce-{self.nonce}'; "
                         "style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self'; "
                         "form-action 'self'; frame-ancestors 'none'")
        for k, v in (extra or {}).items():
            for value in (v if isinstance(v, list) else [v]):
                if "\r" in value or "\n" in value:  # never let data split a header
                    raise ValueError(f"refusing a header value with a line break for {k}")
                self.send_header(k, value)
        self.end_headers()

    def send_bytes(self, status: int, data: bytes, ctype: str, extra: Optional[dict] = None) -> None:
        self._headers(status, ctype, len(data), extra)
        if self.command != "HEAD":
            self.wfile.write(data)

    def html(self, text: str, status: int = 200, extra: Optional[dict] = None) -> None:
        self.send_bytes(status, text.encode("utf-8"), "text/html; charset=utf-8", extra)

    def json(self, obj, status: int = 200) -> None:
        self.send_bytes(status, json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8"),
                        "application/json; charset=utf-8")

    def redirect(self, location: str, extra: Optional[dict] = None) -> None:
        self._headers(303, "text/plain; charset=utf-8", 0, {"Location": location, **(extra or {})})

    def error(self, status: int, message: str, api: bool) -> None:
        if api:
            self.json({"error": message, "status": status}, status)
        else:
            title = {401: "请先登录", 403: "无权访问", 404: "未找到"}.get(status, HTTPStatus(status).phrase)
            self.html(message_page(title, message, self.user, self.csrf), status)

    def set_cookie(self, name: str, value: str, max_age: Optional[int] = None) -> str:
        age = f"; Max-Age={max_age}" if max_age is not None else ""
        return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}"
