"""Plain records the review app, export and reports share (no framework, no database)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional
from zoneinfo import ZoneInfo

from qc_pipeline.records import item_lost

DEFAULT_TZ = "Asia/Shanghai"
NO_TEAM = "(无班组)"      # how reports show calls without a team / agent id
NO_AGENT = "(无坐席)"
SORTS = ("score", "time", "agent", "team", "call")   # list columns that can be sorted


@dataclass(frozen=True)
class ItemView:
    item_id: str
    item_name: str
    mode: str
    points: float
    max_points: float
    applicable: bool
    vetoed: bool
    evidence: tuple[dict, ...] = ()

    @property
    def failed(self) -> bool:
        """Lost points (or vetoed): the stored points, never a threshold of ours."""
        return self.lost_at(self.points)

    def lost_at(self, points: float) -> bool:
        """Whether the item counts as lost with ``points`` (the stored ones, or a reviewer's)."""
        return item_lost(self.applicable, points, self.max_points, self.vetoed)


@dataclass(frozen=True)
class SessionView:
    call_id: str
    kind: str
    source_path: Optional[str]
    agent_id: Optional[str]
    team: Optional[str]
    queue: Optional[str]
    started_at: Optional[dt.datetime]           # aware; shown in the configured time zone
    status: str
    error_reason: Optional[str]
    duration_s: Optional[float]
    role_confidence: Optional[float]
    run_id: str
    part: str = ""          # relative part path (run_date=.../part-....parquet) shared by all tables of its run
    processed_at: Optional[dt.datetime] = None
    total: Optional[float] = None
    grade: Optional[str] = None
    passed: Optional[bool] = None
    veto: bool = False
    veto_items: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()              # sessions.flags + scores.flags as stored by the pipeline
    failed_items: tuple[str, ...] = ()
    escalation: tuple[str, ...] = ()
    customer_emotion_index: Optional[float] = None
    error_detail: Optional[str] = None
    call_type: Optional[str] = None            # summaries table (咨询/投诉/建议/办理), as stored
    call_reason: Optional[str] = None          # summaries.reason (the configured taxonomy), as stored
    state: str = "pending"                     # review workflow: pending | claimed | done
    state_user: Optional[str] = None
    items: tuple[ItemView, ...] = field(default=(), compare=False)

    def all_reasons(self) -> tuple[str, ...]:
        """The stored flags, plus ``failed:<reason>`` for a call the pipeline could not process."""
        if self.status == "failed":
            return self.reasons + ("failed:" + (self.error_reason or "unknown"),)
        return self.reasons

    def summary(self) -> dict:
        return {"call_id": self.call_id, "kind": self.kind, "agent_id": self.agent_id, "team": self.team,
                "queue": self.queue, "started_at": self.started_at.isoformat() if self.started_at else None,
                "status": self.status, "total": self.total, "grade": self.grade, "passed": self.passed,
                "veto": self.veto, "reasons": list(self.all_reasons()), "failed_items": list(self.failed_items),
                "call_type": self.call_type, "call_reason": self.call_reason, "state": self.state,
                "state_user": self.state_user}


@dataclass(frozen=True)
class ListQuery:
    """One list request: filters, search, sort and the keyset position."""
    date_from: Optional[dt.date] = None
    date_to: Optional[dt.date] = None
    team: Optional[str] = None
    agent_id: Optional[str] = None
    item_id: Optional[str] = None
    flag: Optional[str] = None
    below: Optional[float] = None          # total < below
    not_passed: bool = False               # the scorecard's own pass mark (scores.passed = false)
    flagged_only: bool = False             # any stored flag (or failed, with include_failed)
    include_failed: bool = False
    q: Optional[str] = None                # call id (substring) or agent id (prefix)
    text: Optional[str] = None             # transcript text (substring)
    week: Optional[str] = None             # ISO week of the call's day, "2026-W41" (checked by parse_week)
    call_type: Optional[str] = None        # summaries.call_type
    call_reason: Optional[str] = None      # summaries.reason
    resolved: Optional[bool] = None        # summaries.resolved (unknown: not filterable)
    over_target: Optional[bool] = None     # summaries.over_duration_target
    state: Optional[str] = None            # pending | claimed | done | mine
    user: Optional[str] = None             # whose claims "mine" means
    sort: str = "score"
    desc: bool = False
    after: Optional[str] = None            # keyset cursors (opaque)
    before: Optional[str] = None
    last: bool = False
    page: Optional[int] = None             # jump to a page (OFFSET); keyset links are the normal way
    per_page: int = 50


@dataclass(frozen=True)
class Page:
    rows: tuple[SessionView, ...]
    total: int
    page: int                  # 1-based number of this page
    n_pages: int
    next: Optional[str]        # cursor of the next page (None on the last)
    prev: Optional[str]


def fmt_ts(seconds: Optional[float]) -> str:
    """mm:ss (h:mm:ss past an hour); empty for chats without time stamps."""
    if seconds is None:
        return ""
    s = int(seconds)
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


def local_time(value, tz: str = DEFAULT_TZ, seconds: bool = False) -> str:
    """An aware datetime (or ISO text) as 'YYYY-MM-DD HH:MM' in ``tz``; naive values are taken as UTC."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def evidence_keywords(text: Optional[str]) -> list[str]:
    """Evidence text is ``'kw1、kw2 | sentence'``; return the matched keywords (may be empty)."""
    if not text or " | " not in text:
        return []
    head = text.split(" | ", 1)[0]
    return [k for k in (p.strip() for p in head.replace(",", "、").split("、")) if k and "=" not in k]


def evidence_quote(text: Optional[str]) -> str:
    if not text:
        return ""
    return text.split(" | ", 1)[1] if " | " in text else text


def parse_date(value: Optional[str]) -> Optional[dt.date]:
    """``YYYY-MM-DD`` or None for empty; ValueError (naming the value) for anything else."""
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date; use YYYY-MM-DD") from None


def parse_week(value: str) -> tuple[dt.date, dt.date]:
    """``YYYY-Www`` (ISO week) -> (Monday, Sunday); ValueError (naming the value) for anything else."""
    try:
        if len(value) != 8 or value[4:6] != "-W" or not (value[:4] + value[6:]).isdigit():
            raise ValueError
        monday = dt.date.fromisocalendar(int(value[:4]), int(value[6:]), 1)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO week; use YYYY-Www, e.g. 2026-W41") from None
    return monday, monday + dt.timedelta(days=6)
