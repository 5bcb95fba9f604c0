"""Handlers of the team pages: appeals, calibration, reports, coaching export, users, audit trail."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from urllib.parse import quote

from markupsafe import Markup
from starlette.responses import Response

from qc_pipeline.errors import SetupError
from qc_pipeline.web.app import Ctx, HttpError, page_route
from qc_pipeline.web.calibration import calibrate
from qc_pipeline.web.db import ROLES
from qc_pipeline.web.reasons import build_reasons, reasons_body, reasons_csv
from qc_pipeline.web.reports import LEVELS, build_report, report_body
from qc_pipeline.web.views import ListQuery

USER_ACTIONS = ("disable", "enable", "role", "reset", "revoke")


def appeals_page(ctx: Ctx):
    rows = ctx.app.db.pending_appeals()
    runs = ctx.app.model.current_runs(r["call_id"] for r in rows)
    rows = [r for r in rows if r["call_id"] in runs and (r["run_id"] is None or r["run_id"] == runs[r["call_id"]])]
    if ctx.wants_json:
        return ctx.json({"appeals": rows})
    return ctx.render("appeals.html", rows=rows)


def _calibration(ctx: Ctx) -> dict:
    verdicts = ctx.app.db.verdicts()
    return calibrate(verdicts, ctx.app.model.current_runs(v["call_id"] for v in verdicts))


def calibration_page(ctx: Ctx):
    cal = _calibration(ctx)
    if ctx.wants_json:
        return ctx.json(cal)
    return ctx.render("calibration.html", cal=cal, names=ctx.app.model.item_names())


def _report_query(ctx: Ctx) -> ListQuery:
    date_from, date_to = ctx.date_range()
    return ListQuery(date_from=date_from, date_to=date_to, team=ctx.query.get("team"))


def _report(ctx: Ctx) -> dict:
    level = ctx.query.get("level") or "center"
    if level not in LEVELS:
        raise HttpError(400, f"level must be one of {', '.join(LEVELS)}")
    series, items = ctx.app.model.weekly(level, _report_query(ctx))
    return build_report(series, items, level)


def reports_page(ctx: Ctx):
    rep = _report(ctx)
    if ctx.wants_json:
        return ctx.json(rep)
    return ctx.render("reports.html", body=Markup(report_body(rep)), section="levels")  # report_body escapes data


def reasons_page(ctx: Ctx):
    """Call reasons and types by week and team; every number links to the session list of its calls."""
    cubes, n_unsummarized = ctx.app.model.call_reasons(_report_query(ctx))
    rep = build_reasons(cubes, n_unsummarized)
    ctx.audit_detail["n_calls"] = rep["n_calls"]
    if ctx.wants_json:
        return ctx.json(rep)
    filters = {k: ctx.query.get(k) for k in ("from", "to", "team")}
    return ctx.render("reports.html", body=Markup(reasons_body(rep, "", filters)), section="reasons",
                      params=filters, teams=ctx.app.model.distinct("team"))


def reasons_download(ctx: Ctx):
    cubes, _ = ctx.app.model.call_reasons(_report_query(ctx))
    ctx.audit_target = "export:call_reasons.csv"
    ctx.audit_detail["n_rows"] = sum(len(rows) for rows in cubes.values())
    return Response(reasons_csv(cubes), 200, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=call_reasons.csv"})


def export_page(ctx: Ctx):
    return ctx.render("export.html", agents=ctx.app.model.distinct("agent_id"), teams=ctx.app.model.distinct("team"))


def export_download(ctx: Ctx):
    from qc_pipeline.web.export import ExportOptions, export_cases

    q = ctx.query
    if not q.get("agent"):
        raise HttpError(400, "choose an agent (one case pack per download)")
    fmt = q.get("format") or "csv"
    if fmt not in ("csv", "xlsx"):
        raise HttpError(400, "format must be csv or xlsx (html packs with audio: use `qc-pipeline export`)")
    try:
        below = float(q["below"]) if q.get("below") else None
    except ValueError:
        raise HttpError(400, "below must be a number") from None
    opts = ExportOptions(below=below, team=q.get("team"), agent_id=q.get("agent"), since=ctx.date("since"),
                         until=ctx.date("until"), fmt=fmt)
    ctx.audit_target = "export:" + fmt
    with tempfile.TemporaryDirectory(prefix="qc-export-") as tmp:
        try:
            res = export_cases(ctx.app.model, tmp, opts)
        except SetupError as exc:
            raise HttpError(404, str(exc)) from None
        path = res.files[0]
        data = Path(path).read_bytes()
    ctx.audit_detail.update({"n_sessions": res.n_sessions, "n_rows": res.n_rows, "calls": list(res.call_ids)[:1000]})
    ctype = "text/csv; charset=utf-8" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(data, 200, media_type=ctype,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.name)}"})


def users_page(ctx: Ctx, error: str = "", kept: dict | None = None, status: int = 200):
    users = ctx.app.db.users()
    if ctx.wants_json:
        return ctx.json({"users": [{"username": u.username, "role": u.role, "agent_id": u.agent_id,
                                    "disabled": u.disabled} for u in users]})
    return ctx.render("users.html", status, users=users, logins=ctx.app.db.active_logins(), roles=ROLES,
                      error=error, kept=kept or {})


def users_add(ctx: Ctx):
    f = ctx.form()
    name = str(f.get("username") or "").strip()
    ctx.audit_target = "user:" + name
    try:
        u = ctx.app.db.add_user(name, str(f.get("password") or ""), str(f.get("role") or ""),
                                str(f.get("agent_id") or "").strip() or None)
    except SetupError as exc:
        kept = {k: v for k, v in f.items() if k not in ("password", "csrf")}
        return users_page(ctx, str(exc), kept, 400)
    ctx.audit_detail.update({"change": "add", "role": u.role, "agent_id": u.agent_id})
    return ctx.redirect("/users")


def users_change(ctx: Ctx, name: str):
    f = ctx.form()
    action = str(f.get("action") or "")
    db = ctx.app.db
    ctx.audit_target = "user:" + name
    ctx.audit_detail["change"] = action
    try:
        if action not in USER_ACTIONS:
            raise SetupError(f"action must be one of {', '.join(USER_ACTIONS)}")
        target = db.user(name)
        if target.username == ctx.user.username and action in ("disable", "role"):
            raise SetupError("admins cannot disable themselves or change their own role")
        if action in ("disable", "enable"):
            db.set_disabled(target.username, action == "disable")
        elif action == "role":
            role = str(f.get("role") or "")
            db.set_role(target.username, role, str(f.get("agent_id") or "").strip() or None)
            ctx.audit_detail.update({"role": role, "was": target.role})
        elif action == "reset":
            db.reset_password(target.username, str(f.get("password") or ""))
        else:
            ctx.audit_detail["revoked"] = db.revoke_sessions(target.username)
    except SetupError as exc:
        if ctx.wants_json:
            raise HttpError(400, str(exc)) from None
        return users_page(ctx, str(exc), None, 400)
    if ctx.wants_json:
        u = db.user(name)
        return ctx.json({"username": u.username, "role": u.role, "agent_id": u.agent_id, "disabled": u.disabled})
    return ctx.redirect("/users")


def audit_page(ctx: Ctx):
    since = None
    if ctx.query.get("since"):
        day = ctx.date("since")
        since = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    call_id = ctx.query.get("call") or None
    rows = list(ctx.app.audit.rows(since=since, call_id=call_id, limit=500))
    if ctx.wants_json:
        return ctx.json({"rows": rows})
    return ctx.render("audit.html", rows=rows, params=ctx.query)


ROUTES = [
    page_route("/appeals", appeals_page, "appeals", audit="list_appeals"),
    page_route("/api/appeals", appeals_page, "appeals", audit="list_appeals"),
    page_route("/calibration", calibration_page, "calibration", audit="view_calibration"),
    page_route("/api/calibration", calibration_page, "calibration", audit="view_calibration"),
    page_route("/reports", reports_page, "reports", audit="view_report"),
    page_route("/api/reports", reports_page, "reports", audit="view_report"),
    page_route("/reports/reasons", reasons_page, "reports", audit="view_report_reasons"),
    page_route("/api/reports/reasons", reasons_page, "reports", audit="view_report_reasons"),
    page_route("/reports/reasons/download", reasons_download, "reports", audit="export_report_reasons"),
    page_route("/export", export_page, "export", audit="export_form"),
    page_route("/export/download", export_download, "export", audit="export_download"),
    page_route("/users", users_page, "users", audit="list_users"),
    page_route("/api/users", users_page, "users", audit="list_users"),
    page_route("/users", users_add, "users", methods=("POST",), audit="user_add"),
    page_route("/users/{name}", users_change, "users", methods=("POST",), audit="user_change"),
    page_route("/api/users/{name}", users_change, "users", methods=("POST",), audit="user_change"),
    page_route("/audit", audit_page, "audit", audit="view_audit"),
    page_route("/api/audit", audit_page, "audit", audit="view_audit"),
]
