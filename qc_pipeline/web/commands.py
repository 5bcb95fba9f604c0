"""CLI sub-commands of the QA review app: ``serve``, ``export``, ``report``, ``users``."""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import sys
import time
from pathlib import Path

from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

DB_HELP = "review database (SQLite; default: RESULTS/_review/reviews.sqlite)"


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
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise SetupError(f"{flag} {value!r} is not a date; use YYYY-MM-DD") from None


def _cmd_serve(args) -> int:
    from qc_pipeline.web.server import App, AppConfig

    results = _results(args.results)
    roots = tuple(Path(r).resolve() for r in (args.audio_root or [results]))
    for r in roots:
        if not r.is_dir():
            raise SetupError(f"--audio-root {r} is not a folder")
    app = App(AppConfig(results=results, db_path=_db_path(args), audio_roots=roots, threshold=args.threshold))
    if not app.db.users():
        log.warning("no users yet: add one with `qc-pipeline users add NAME --role admin --db %s`", app.cfg.db_path)
    try:
        server = app.make_server(args.host, args.port)
    except OSError as exc:
        raise SetupError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); pick another --port") \
            from None
    app.store.sessions()  # load once before the first request
    log.info("review app on http://%s:%d/ (results %s, db %s, audio roots %s)", args.host, server.server_port,
             results, app.cfg.db_path, ", ".join(map(str, roots)))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _cmd_export(args) -> int:
    from qc_pipeline.web.data import ResultsStore
    from qc_pipeline.web.export import ExportOptions, export_cases

    t0 = time.perf_counter()
    store = ResultsStore(_results(args.results))
    opts = ExportOptions(below=args.below, team=args.team, agent_id=args.agent, since=_date(args.since, "--since"),
                         until=_date(args.until, "--until"), fmt=args.format, copy_audio=not args.no_copy_audio)
    res = export_cases(store, args.out, opts)
    log.info("export: %d case packs, %d sessions, %d rows in %.2f s -> %s", len(res.files), res.n_sessions,
             res.n_rows, time.perf_counter() - t0, args.out)
    for f in res.files:
        sys.stdout.write(f"{f}\n")
    return 0


def _cmd_report(args) -> int:
    from qc_pipeline.web.data import QueueFilter, ResultsStore
    from qc_pipeline.web.reports import LEVELS, build_report, render_report

    store = ResultsStore(_results(args.results))
    flt = QueueFilter(date_from=_date(args.since, "--since"), date_to=_date(args.until, "--until"), team=args.team,
                      flagged_only=False)
    sessions = store.query(flt)
    if not sessions:
        raise SetupError(f"no session in {args.results} matches the filters; loosen --team/--since/--until")
    levels = LEVELS if args.level == "all" else (args.level,)
    reps = [build_report(sessions, lv, args.threshold) for lv in levels]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        import json

        out.write_text(json.dumps(reps, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        out.write_text(render_report(reps, title="质检报表 QA report"), encoding="utf-8")
    log.info("report (%s) of %d sessions -> %s", ", ".join(levels), len(sessions), out)
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

    db = ReviewDB(_db_path(args))
    if args.action == "add":
        if not args.name or not args.role:
            raise SetupError("usage: qc-pipeline users add NAME --role reviewer|trainer|agent|admin")
        u = db.add_user(args.name, _read_password(args), args.role, args.agent_id)
        log.info("added user %s (%s%s)", u.username, u.role, f", agent {u.agent_id}" if u.agent_id else "")
    else:
        for u in db.users():
            sys.stdout.write(f"{u.username}\t{u.role}\t{u.agent_id or ''}\n")
    return 0


def add_commands(sub) -> None:
    """Register the review-app sub-commands on the main parser's subparsers."""
    s = sub.add_parser("serve", help="QA review web app (queue, session review, appeals, reports)")
    s.add_argument("--results", required=True, help="results folder of `qc-pipeline run`")
    s.add_argument("--db", help=DB_HELP)
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--audio-root", action="append", metavar="DIR",
                   help="folder audio may be served from (repeatable; default: the results folder)")
    s.add_argument("--threshold", type=float, default=60.0, help="low-score threshold of the queue (default 60)")
    s.set_defaults(func=_cmd_serve)

    e = sub.add_parser("export", help="coaching case packs per agent (low-score sessions, failed items)")
    e.add_argument("--results", required=True)
    e.add_argument("--below", type=float, default=60.0, help="sessions with total below this (default 60)")
    e.add_argument("--team")
    e.add_argument("--agent")
    e.add_argument("--since", help="YYYY-MM-DD (started_at)")
    e.add_argument("--until", help="YYYY-MM-DD (inclusive)")
    e.add_argument("--format", choices=("xlsx", "csv", "html"), default="xlsx")
    e.add_argument("--out", required=True, help="output folder (one file per agent)")
    e.add_argument("--no-copy-audio", action="store_true", help="html: link the source files instead of copying")
    e.set_defaults(func=_cmd_export)

    r = sub.add_parser("report", help="center/team/agent report with weekly trend charts (HTML or .json)")
    r.add_argument("--results", required=True)
    r.add_argument("--out", required=True, help="report.html (or .json)")
    r.add_argument("--level", choices=("center", "team", "agent", "all"), default="all")
    r.add_argument("--team")
    r.add_argument("--since")
    r.add_argument("--until")
    r.add_argument("--threshold", type=float, default=60.0)
    r.set_defaults(func=_cmd_report)

    u = sub.add_parser("users", help="manage review-app users")
    u.add_argument("action", choices=("add", "list"))
    u.add_argument("name", nargs="?")
    u.add_argument("--role", choices=("reviewer", "trainer", "agent", "admin"))
    u.add_argument("--agent-id", help="agent_id in the results (required for --role agent)")
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    u.add_argument("--results", help="results folder (locates the default --db)")
    u.add_argument("--db", help=DB_HELP)
    u.set_defaults(func=_cmd_users)
