"""SQL of the read model's list queries: the columns of a session row, sort keys, filters, keyset cursors."""

from __future__ import annotations

import base64
import datetime as dt
import json

from qc_pipeline.web.views import ListQuery, SessionView, parse_week

COLS = ("call_id", "kind", "source_path", "agent_id", "team", "queue", "started_at", "status", "error_reason",
         "duration_s", "role_confidence", "run_id", "part", "processed_at", "total", "grade", "passed", "veto",
         "veto_items", "reasons", "failed_items", "escalation", "customer_emotion_index", "error_detail",
         "call_type", "call_reason")
SELECT_VIEW = ", ".join(f"c.{c}" for c in COLS) + ", coalesce(w.state, 'pending'), w.user_name"
FROM = "cur c LEFT JOIN wf w ON w.call_id = c.call_id AND w.run_id = c.run_id"

# sort key expressions (never NULL, so keyset comparisons stay total); tie-breaker: call_id
SORT_EXPR = {"score": "coalesce(c.total, 1e9)", "time": "coalesce(c.started_at, TIMESTAMPTZ '1970-01-01 00:00Z')",
              "agent": "coalesce(c.agent_id, '')", "team": "coalesce(c.team, '')", "call": "c.call_id"}


def view(row: tuple) -> SessionView:
    d = dict(zip(COLS, row[:len(COLS)]))
    for k in ("veto_items", "reasons", "failed_items", "escalation"):
        d[k] = tuple(d[k] or ())
    d["veto"] = bool(d["veto"])
    return SessionView(**d, state=row[len(COLS)], state_user=row[len(COLS) + 1])


def encode_cursor(value, call_id: str) -> str:
    if isinstance(value, dt.datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([value, call_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str):
    try:
        value, call_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, dict):
            value = dt.datetime.fromisoformat(value["t"])
        if not isinstance(call_id, str) or not isinstance(value, (str, int, float, dt.datetime)):
            raise ValueError
        return value, call_id
    except (ValueError, TypeError, KeyError, json.JSONDecodeError):
        raise ValueError("bad page cursor; start again from the first page") from None


# ListQuery field -> its condition, applied when the field is set (not None, not empty); the other filters below
VALUE_FILTERS = {"date_from": "c.day >= ?", "date_to": "c.day <= ?", "team": "c.team = ?",
                 "agent_id": "c.agent_id = ?", "item_id": "list_contains(c.failed_items, ?)",
                 "flag": "list_contains(c.reasons, ?)", "below": "c.total < ?", "call_type": "c.call_type = ?",
                 "call_reason": "c.call_reason = ?", "resolved": "c.resolved = ?",
                 "over_target": "c.over_duration_target = ?"}


def where_clause(q: ListQuery) -> tuple[list[str], list]:
    """SQL conditions (on ``cur c`` joined with ``wf w``) and their parameters for ``q``; a text search needs
    the temp table ``text_hits`` (made by :meth:`ReadModel._where`)."""
    where, args = [], []

    def add(sql: str, *values) -> None:
        where.append(sql)
        args.extend(values)

    for name, sql in VALUE_FILTERS.items():
        value = getattr(q, name)
        if value is not None and value != "":
            add(sql, value)
    if q.not_passed:
        add("c.passed = false")
    if q.flagged_only:
        add("(len(c.reasons) > 0 OR c.status = 'failed')" if q.include_failed else "len(c.reasons) > 0")
    if q.q:  # call id or agent id, case-insensitive substring
        add("contains(c.skey, ?)", q.q.lower())
    if q.week:
        add("c.day BETWEEN ? AND ?", *parse_week(q.week))
    if q.text:
        add("EXISTS (SELECT 1 FROM text_hits t WHERE t.call_id = c.call_id AND t.run_id = c.run_id)")
    if q.state == "mine":
        add("w.state = 'claimed' AND w.user_name = ?", q.user or "")
    elif q.state == "pending":
        add("w.state IS NULL")
    elif q.state:
        add("w.state = ?", q.state)
    return where, args


# -- call reasons and types (the summaries table) ----------------------------------------------------
REASON_DIMS = {"reason": "c.call_reason", "type": "c.call_type"}   # report dimension -> column of cur


def reason_cube_sql(dim: str, where: list[str]) -> str:
    """(value, team, ISO week, calls, over target, target known, resolved, resolved known) of the calls with a
    summary that match ``where``: every cell of the reasons report sums these rows, and the list filters
    (``call_reason``/``call_type``, ``team``, ``week``, ``over_target``, ``resolved``) select exactly its calls."""
    col = REASON_DIMS[dim]
    return (f"SELECT {col}, c.team, strftime(c.day, '%G-W%V'), count(*), "
            "count(*) FILTER (WHERE c.over_duration_target), count(c.over_duration_target), "
            "count(*) FILTER (WHERE c.resolved), count(c.resolved) "
            f"FROM {FROM} WHERE {' AND '.join(where + [f'{col} IS NOT NULL'])} GROUP BY ALL ORDER BY ALL")


def unsummarized_sql(where: list[str]) -> str:
    """Calls matching ``where`` without a summary (results of runs before the summarize stage, failed calls)."""
    return f"SELECT count(*) FROM {FROM} WHERE {' AND '.join(where + ['c.call_type IS NULL'])}"
