"""Read-only view of a results folder for the review app, export and reports.

Reads the committed Parquet parts with their explicit schemas (never inferred) and joins
``sessions`` + ``scores`` + ``item_results`` into one :class:`SessionView` per call.  A call
that was re-run appears in several runs: the newest committed sessions row wins and the
other tables are taken from that same ``run_id`` (so dependent parts of an interrupted
write are ignored).  The Parquet files are never written.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qc_pipeline.errors import SetupError
from qc_pipeline.schema import TABLES
from qc_pipeline.sentiment import is_flagged

log = logging.getLogger(__name__)

LOW_ROLE_CONFIDENCE = 0.7
LOW_CUSTOMER_EMOTION = 60.0


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
        return self.applicable and (self.points < self.max_points or self.vetoed)


@dataclass(frozen=True)
class SessionView:
    call_id: str
    kind: str
    source_path: Optional[str]
    agent_id: Optional[str]
    team: Optional[str]
    queue: Optional[str]
    started_at: Optional[str]
    status: str
    error_reason: Optional[str]
    duration_s: Optional[float]
    role_confidence: Optional[float]
    run_id: str
    part: str = ""  # relative part path (run_date=.../part-....parquet) shared by all tables of its run
    total: Optional[float] = None
    grade: Optional[str] = None
    veto: bool = False
    score_flags: tuple[str, ...] = ()
    session_flags: tuple[str, ...] = ()
    customer_emotion_index: Optional[float] = None
    items: tuple[ItemView, ...] = ()
    error_detail: Optional[str] = None

    @property
    def failed_items(self) -> tuple[str, ...]:
        return tuple(i.item_id for i in self.items if i.failed)

    @property
    def date(self) -> Optional[dt.date]:
        return parse_date(self.started_at)

    def reasons(self, threshold: float, include_failed: bool = False) -> tuple[str, ...]:
        """Why this session is in the review queue (empty = not flagged)."""
        out = list(self.score_flags)
        if self.total is not None and self.total < threshold and "low_score" not in out:
            out.append("low_score")
        if self.veto and "veto" not in out:
            out.append("veto")
        if is_flagged(self.customer_emotion_index, LOW_CUSTOMER_EMOTION) and "customer_emotion_low" not in out:
            out.append("customer_emotion_low")
        if self.role_confidence is not None and self.role_confidence < LOW_ROLE_CONFIDENCE:
            out.append("low_role_confidence")
        if include_failed and self.status == "failed":
            out.append("failed:" + (self.error_reason or "unknown"))
        return tuple(out)

    def summary(self, threshold: float) -> dict:
        return {"call_id": self.call_id, "kind": self.kind, "agent_id": self.agent_id, "team": self.team,
                "queue": self.queue, "started_at": self.started_at, "status": self.status,
                "total": self.total, "grade": self.grade, "veto": self.veto,
                "reasons": list(self.reasons(threshold, include_failed=True)),
                "failed_items": list(self.failed_items)}


@dataclass(frozen=True)
class QueueFilter:
    date_from: Optional[dt.date] = None
    date_to: Optional[dt.date] = None
    team: Optional[str] = None
    agent_id: Optional[str] = None
    item_id: Optional[str] = None
    flag: Optional[str] = None
    below: Optional[float] = None
    flagged_only: bool = True
    include_failed: bool = False
    threshold: float = 60.0


def parse_date(value: Optional[str]) -> Optional[dt.date]:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _parts(root: Path, table: str) -> list[Path]:
    return sorted((root / table).glob("run_date=*/part-*.parquet"))


def _read(root: Path, table: str, columns: Optional[list[str]] = None, filters=None) -> pa.Table:
    schema = TABLES[table]
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])
    tables = []
    for part in _parts(root, table):
        try:
            tables.append(pq.read_table(part, columns=columns, schema=TABLES[table], filters=filters))
        except Exception as exc:  # an unreadable part is skipped, never fatal
            log.warning("ignoring unreadable part %s (%s)", part, exc)
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def _shown(when: Optional[dt.datetime]) -> Optional[str]:
    """``sessions.started_at`` (a UTC timestamp) as ISO text in the default ``run.input_timezone``."""
    if when is None:
        return None
    from zoneinfo import ZoneInfo

    from qc_pipeline.config import RunConfig

    return when.astimezone(ZoneInfo(RunConfig().input_timezone)).isoformat(timespec="seconds")


def match(s: SessionView, f: QueueFilter) -> bool:
    d = s.date
    if f.date_from and (d is None or d < f.date_from):
        return False
    if f.date_to and (d is None or d > f.date_to):
        return False
    if f.team and s.team != f.team:
        return False
    if f.agent_id and s.agent_id != f.agent_id:
        return False
    if f.item_id and f.item_id not in s.failed_items:
        return False
    if f.below is not None and (s.total is None or s.total >= f.below):
        return False
    reasons = s.reasons(f.threshold, f.include_failed)
    if f.flag and f.flag not in reasons:
        return False
    if f.flagged_only and not reasons:
        return False
    return True


def worst_first(sessions) -> list[SessionView]:
    return sorted(sessions, key=lambda s: (s.total is None, s.total if s.total is not None else 0.0,
                                           s.started_at or "", s.call_id))


class ResultsStore:
    """Cached, auto-refreshing join of a results folder.  Thread-safe; refreshes when parts change."""

    def __init__(self, root: str | os.PathLike, *, refresh_s: float = 2.0) -> None:
        self.root = Path(root).resolve()
        if not (self.root / "sessions").is_dir():
            raise SetupError(f"{self.root} holds no results (no sessions/ folder); "
                             "run `qc-pipeline run ... --out DIR` first and pass that DIR as --results")
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._signature: tuple = ()
        self._checked = 0.0
        self._sessions: dict[str, SessionView] = {}

    def _current_signature(self) -> tuple:
        sig = []
        for part in _parts(self.root, "sessions"):
            try:
                sig.append((str(part), part.stat().st_mtime_ns))
            except FileNotFoundError:
                continue
        return tuple(sig)

    def sessions(self) -> dict[str, SessionView]:
        with self._lock:
            now = time.monotonic()
            if not self._checked or now - self._checked >= self.refresh_s:
                self._checked = now
                sig = self._current_signature()
                if sig != self._signature:
                    self._sessions = self._load()
                    self._signature = sig
            return self._sessions

    def get(self, call_id: str) -> Optional[SessionView]:
        return self.sessions().get(call_id)

    def _load(self) -> dict[str, SessionView]:
        t0 = time.perf_counter()
        latest: dict[str, dict] = {}
        for part in _parts(self.root, "sessions"):
            try:
                table = pq.read_table(part, schema=TABLES["sessions"]).drop_columns(["drops", "stage_seconds"])
            except Exception as exc:  # an unreadable part is skipped, never fatal
                log.warning("ignoring unreadable part %s (%s)", part, exc)
                continue
            rel = part.relative_to(self.root / "sessions")  # dependent tables use the same part name
            for row in table.to_pylist():
                prev = latest.get(row["call_id"])
                if prev is None or row["processed_at"] >= prev["processed_at"]:
                    latest[row["call_id"]] = {**row, "_part": rel}
        runs = {cid: r["run_id"] for cid, r in latest.items()}
        scores = {r["call_id"]: r for r in _read(self.root, "scores").to_pylist() if runs.get(r["call_id"]) == r["run_id"]}
        items: dict[str, list[ItemView]] = {}
        for r in _read(self.root, "item_results").to_pylist():
            if runs.get(r["call_id"]) != r["run_id"]:
                continue
            items.setdefault(r["call_id"], []).append(ItemView(
                item_id=r["item_id"], item_name=r["item_name"] or r["item_id"], mode=r["mode"] or "",
                points=r["points"], max_points=r["max_points"], applicable=r["applicable"],
                vetoed=bool(r["vetoed"]), evidence=tuple(r["evidence"] or ())))
        out = {}
        for cid, r in latest.items():
            sc = scores.get(cid) or {}
            out[cid] = SessionView(
                call_id=cid, kind=r["kind"], source_path=r["source_path"], agent_id=r["agent_id"], team=r["team"],
                queue=r["queue"], started_at=_shown(r["started_at"]), status=r["status"], error_reason=r["error_reason"],
                duration_s=r["duration_s"], role_confidence=r["role_confidence"], run_id=r["run_id"],
                part=str(r["_part"]),
                total=sc.get("total"), grade=sc.get("grade"), veto=bool(sc.get("veto")),
                score_flags=tuple(sc.get("flags") or ()), session_flags=tuple(r["flags"] or ()),
                customer_emotion_index=sc.get("customer_emotion_index"), items=tuple(items.get(cid, ())),
                error_detail=r["error_detail"])
        log.info("loaded %d sessions from %s in %.2f s", len(out), self.root, time.perf_counter() - t0)
        return out

    def utterances(self, call_id: str) -> list[dict]:
        s = self.get(call_id)
        if s is None:
            return []
        cols = ["call_id", "turn_index", "role", "channel", "start", "end", "text", "emotion_index", "run_id"]
        part = self.root / "utterances" / s.part
        if s.part and part.is_file():  # the twin part of the session's commit marker: one small read
            t = pq.read_table(part, columns=cols, schema=TABLES["utterances"], filters=[("call_id", "=", call_id)])
        else:
            t = _read(self.root, "utterances", columns=cols, filters=[("call_id", "=", call_id)])
        t = t.filter(pc.equal(t.column("run_id"), s.run_id))
        return sorted(t.to_pylist(), key=lambda u: u["turn_index"])

    def query(self, f: QueueFilter, sessions=None) -> list[SessionView]:
        pool = self.sessions().values() if sessions is None else sessions
        return worst_first(s for s in pool if match(s, f))

    def teams(self) -> list[str]:
        return sorted({s.team for s in self.sessions().values() if s.team})

    def agents(self) -> list[str]:
        return sorted({s.agent_id for s in self.sessions().values() if s.agent_id})

    def item_names(self) -> dict[str, str]:
        return {i.item_id: i.item_name for s in self.sessions().values() for i in s.items}


def fmt_ts(seconds: Optional[float]) -> str:
    """mm:ss (h:mm:ss past an hour); empty for chats without time stamps."""
    if seconds is None:
        return ""
    s = int(seconds)
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


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
