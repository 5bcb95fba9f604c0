"""CLI sub-commands of the QA review app: ``serve``, ``export``, ``report``, ``users``, ``audit``."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from qc_pipeline.errors import SetupError
from qc_pipeline.web.db import ROLES
from qc_pipeline.web.views import DEFAULT_TZ

log = logging.getLogger(__name__)

DB_HELP = "review database (SQLite; default: RESULTS/_review/reviews.sqlite)"
TZ_HELP = f"time zone for dates and times shown (default {DEFAULT_TZ})"


def _results(value: str) -> Path:
    p = Path(value)
    if not (p / "sessions").is_dir():
        raise SetupError(f"--results {p} holds no results (no sessions/ folder); "
                         "pass the --out folder of a `qc-pipeline run`")
    return p


def _db_path(args) -> Path:
    if args.db:
        return Path(args.db)
    if not getattr(args, "results", None):
        raise SetupError("give --db PATH (or --results DIR to use DIR/_review/reviews.sqlite)")
    return Path(args.results) / "_review" / "reviews.sqlite"


def _date(value: str | None, flag: str):
    from qc_pipeline.web.views import parse_date

    try:
        return parse_date(value)
    except ValueError as exc:
        raise SetupError(f"{flag}: {exc}") from None


def _tz(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SetupError(f"--timezone {value!r} is not a time zone name (e.g. Asia/Shanghai)") from None
    return value


def _cli_actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except Exception:
        return "cli"


def _audit(db_path: Path, action: str, **kw) -> None:
    from qc_pipeline.web.audit import AuditLog

    AuditLog(db_path).record(user=_cli_actor(), role="cli", action=action, address="local", **kw)


def _model(args):
    """The read model of --results, brought up to date before use (command-line tools wait for it)."""
    from qc_pipeline.web.readmodel import ReadModel

    results = _results(args.results)
    model = ReadModel(results, _db_path(args).with_name("readmodel.duckdb"), tz=_tz(args.timezone))
    t0 = time.perf_counter()
    model.refresh()
    log.info("read model up to date in %.1f s (%s)", time.perf_counter() - t0, model.path)
    return model


def _cmd_serve(args) -> int:
    import uvicorn

    from qc_pipeline.web.app import AppConfig, ReviewApp

    os.umask(0o077)  # every file the server creates (databases, their -wal/-shm, temp exports) is 0600
    results = _results(args.results)
    roots = tuple(Path(r).resolve() for r in (args.audio_root or [results]))
    for r in roots:
        if not r.is_dir():
            raise SetupError(f"--audio-root {r} is not a folder")
    if args.appeal_days <= 0:
        raise SetupError("--appeal-days must be positive")
    app = ReviewApp(AppConfig(results=results, db_path=_db_path(args), audio_roots=roots, tz=_tz(args.timezone),
                              appeal_days=args.appeal_days))
    if not app.db.users():
        log.warning("no users yet: add one with `qc-pipeline users add NAME --role admin --db %s`", app.cfg.db_path)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        raise SetupError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); pick another --port") \
            from None
    config = uvicorn.Config(app.asgi, log_level="warning", proxy_headers=bool(args.trusted_proxy),
                            forwarded_allow_ips=args.trusted_proxy or None, timeout_keep_alive=30,
                            lifespan="on")
    log.info("review app on http://%s:%d/ (results %s, db %s, audio roots %s, time zone %s)", args.host,
             sock.getsockname()[1], results, app.cfg.db_path, ", ".join(map(str, roots)), app.cfg.tz)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _cmd_export(args) -> int:
    from qc_pipeline.web.export import ExportOptions, export_cases

    os.umask(0o077)
    t0 = time.perf_counter()
    model = _model(args)
    opts = ExportOptions(below=args.below, team=args.team, agent_id=args.agent, since=_date(args.since, "--since"),
                         until=_date(args.until, "--until"), fmt=args.format, copy_audio=not args.no_copy_audio,
                         tz=model.tz)
    res = export_cases(model, args.out, opts)
    _audit(_db_path(args), "export_cli", target=f"export:{args.format}:{args.out}",
           detail={"n_sessions": res.n_sessions, "agent": args.agent, "team": args.team, "below": args.below,
                   "calls": list(res.call_ids)[:1000]})
    log.info("export: %d case packs, %d sessions, %d rows in %.2f s -> %s", len(res.files), res.n_sessions,
             res.n_rows, time.perf_counter() - t0, args.out)
    for f in res.files:
        sys.stdout.write(f"{f}\n")
    return 0


def _cmd_report(args) -> int:
    from qc_pipeline.web.reasons import build_reasons, reasons_body
    from qc_pipeline.web.reports import LEVELS, build_report, render_report
    from qc_pipeline.web.views import ListQuery

    app_url = (args.app_url or "").rstrip("/")
    if app_url and not app_url.startswith(("http://", "https://")):
        raise SetupError(f"--app-url {args.app_url!r} must start with http:// or https://")
    model = _model(args)
    q = ListQuery(date_from=_date(args.since, "--since"), date_to=_date(args.until, "--until"), team=args.team)
    levels = LEVELS if args.level == "all" else (args.level,)
    reps = [build_report(*model.weekly(lv, q), lv) for lv in levels]
    reasons = build_reasons(*model.call_reasons(q))
    if not reps[0]["n_sessions"] and not reasons["n_calls"]:
        raise SetupError(f"no scored or summarized session in {args.results} matches the filters; "
                         "loosen --team/--since/--until")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps({"reports": reps, "call_reasons": reasons}, ensure_ascii=False, indent=1),
                       encoding="utf-8")
    else:
        filters = {"from": args.since, "to": args.until, "team": args.team}
        out.write_text(render_report(reps, title="质检报表 QA report",
                                     extra=reasons_body(reasons, app_url or None, filters)), encoding="utf-8")
    _audit(_db_path(args), "report_cli", target=f"report:{out}",
           detail={"levels": list(levels), "call_reasons": reasons["n_calls"], "team": args.team,
                   "since": args.since, "until": args.until})
    log.info("report (%s; call reasons of %d sessions) of %d sessions -> %s", ", ".join(levels),
             reasons["n_calls"], reps[0]["n_sessions"], out)
    return 0


def _read_password(args) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = getpass.getpass("password: ")
        if pw != getpass.getpass("repeat: "):
            raise SetupError("the passwords differ; run the command again")
    return pw


def _cmd_users(args) -> int:
    from qc_pipeline.web.db import ReviewDB

    os.umask(0o077)
    path = _db_path(args)
    db = ReviewDB(path)
    if args.action == "list":
        logins = db.active_logins()
        for u in db.users():
            sys.stdout.write(f"{u.username}\t{u.role}\t{u.agent_id or ''}\t{'disabled' if u.disabled else 'active'}"
                             f"\t{logins.get(u.username, 0)}\n")
        return 0
    if not args.name:
        raise SetupError(f"usage: qc-pipeline users {args.action} NAME")
    detail: dict = {}
    if args.action == "add":
        if not args.role:
            raise SetupError("usage: qc-pipeline users add NAME --role reviewer|trainer|agent|admin")
        u = db.add_user(args.name, _read_password(args), args.role, args.agent_id)
        detail = {"role": u.role, "agent_id": u.agent_id}
    elif args.action in ("disable", "enable"):
        u = db.set_disabled(args.name, args.action == "disable")
    elif args.action == "role":
        if not args.role:
            raise SetupError("usage: qc-pipeline users role NAME --role ROLE [--agent-id A1001]")
        u = db.set_role(args.name, args.role, args.agent_id)
        detail = {"role": u.role, "agent_id": u.agent_id}
    elif args.action == "reset":
        u = db.reset_password(args.name, _read_password(args))
    else:  # revoke
        u = db.user(args.name)
        detail = {"revoked": db.revoke_sessions(u.username)}
    _audit(path, "user_" + args.action, target="user:" + u.username, detail=detail)
    log.info("user %s: %s done%s", u.username, args.action, f" ({detail})" if detail else "")
    return 0


def _cmd_audit(args) -> int:
    from qc_pipeline.web.audit import AuditLog

    path = _db_path(args)
    if not path.exists():
        raise SetupError(f"no review database at {path}; pass --db or --results")
    audit = AuditLog(path)
    if args.action == "verify":
        v = audit.verify()
        sys.stdout.write(f"{'OK' if v.ok else 'TAMPERED'}: {v.n_rows} rows, head #{v.head_id} {v.head_hash}\n")
        for p in v.problems:
            sys.stdout.write(f"  {p}\n")
        return 0 if v.ok else 1
    since = None
    if args.since:
        day = _date(args.since, "--since")
        since = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    n = 0
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
    try:
        for row in audit.rows(since=since):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if args.out:
            out.close()
    audit.record(user=_cli_actor(), role="cli", action="audit_export", address="local",
                 target=f"audit:{args.out or 'stdout'}", detail={"since": args.since, "n_rows": n})
    log.info("audit export: %d rows%s", n, f" -> {args.out}" if args.out else "")
    return 0


def add_commands(sub) -> None:
    """Register the review-app sub-commands on the main parser's subparsers."""
    s = sub.add_parser("serve", help="QA review web app (queue, session review, appeals, reports)")
    s.add_argument("--results", required=True, help="results folder of `qc-pipeline run`")
    s.add_argument("--db", help=DB_HELP + "; the read model readmodel.duckdb sits next to it")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--audio-root", action="append", metavar="DIR",
                   help="folder audio may be served from (repeatable; default: the results folder)")
    s.add_argument("--timezone", default=DEFAULT_TZ, help=TZ_HELP)
    s.add_argument("--appeal-days", type=float, default=7.0,
                   help="days an agent has to appeal an item after it was scored or last reviewed (default 7)")
    s.add_argument("--trusted-proxy", metavar="IP",
                   help="address of a reverse proxy whose X-Forwarded-For is trusted (lockout and audit addresses)")
    s.set_defaults(func=_cmd_serve)

    e = sub.add_parser("export", help="coaching case packs per agent (low-score sessions, failed items)")
    e.add_argument("--results", required=True)
    e.add_argument("--db", help=DB_HELP)
    e.add_argument("--below", type=float, help="sessions with total below this (default: below the scorecard's "
                                                "pass mark, i.e. scores.passed = false)")
    e.add_argument("--team")
    e.add_argument("--agent")
    e.add_argument("--since", help="YYYY-MM-DD (started_at)")
    e.add_argument("--until", help="YYYY-MM-DD (inclusive)")
    e.add_argument("--format", choices=("xlsx", "csv", "html"), default="xlsx")
    e.add_argument("--out", required=True, help="output folder (one file per agent)")
    e.add_argument("--no-copy-audio", action="store_true", help="html: link the source files instead of copying")
    e.add_argument("--timezone", default=DEFAULT_TZ, help=TZ_HELP)
    e.set_defaults(func=_cmd_export)

    r = sub.add_parser("report", help="center/team/agent report with weekly trend charts (HTML or .json)")
    r.add_argument("--results", required=True)
    r.add_argument("--db", help=DB_HELP)
    r.add_argument("--out", required=True, help="report.html (or .json)")
    r.add_argument("--level", choices=("center", "team", "agent", "all"), default="all")
    r.add_argument("--team")
    r.add_argument("--since")
    r.add_argument("--until")
    r.add_argument("--app-url", metavar="URL", help="review app address (e.g. http://qa-host:8080): the call "
                                                    "reasons' numbers link to its session list of those calls")
    r.add_argument("--timezone", default=DEFAULT_TZ, help=TZ_HELP)
    r.set_defaults(func=_cmd_report)

    u = sub.add_parser("users", help="manage review-app users")
    u.add_argument("action", choices=("add", "list", "disable", "enable", "role", "reset", "revoke"))
    u.add_argument("name", nargs="?")
    u.add_argument("--role", choices=ROLES)
    u.add_argument("--agent-id", help="agent_id in the results (required for --role agent)")
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    u.add_argument("--results", help="results folder (locates the default --db)")
    u.add_argument("--db", help=DB_HELP)
    u.set_defaults(func=_cmd_users)

    a = sub.add_parser("audit", help="verify the audit trail's hash chain, or export it (JSON lines)")
    a.add_argument("action", choices=("verify", "export"))
    a.add_argument("--since", help="export: rows from this date on (YYYY-MM-DD, UTC)")
    a.add_argument("--out", help="export: file (default stdout)")
    a.add_argument("--results", help="results folder (locates the default --db)")
    a.add_argument("--db", help=DB_HELP)
    a.set_defaults(func=_cmd_audit)
