"""Durable review store (SQLite, WAL): users, login sessions and the append-only review history.

``reviews`` is an event log: confirm | override | appeal | appeal_decision.  Triggers make
UPDATE and DELETE raise, so history can only grow.  Each event records the ``run_id`` of the
session it was made on; the current state of an item is its latest event *of the session's
current run* (a re-processed call starts unreviewed; events from before run tracking, with an
empty run_id, count for any run).  The Parquet results are never rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

ROLES = ("reviewer", "trainer", "agent", "admin")
ACTIONS = ("confirm", "override", "appeal", "appeal_decision")
SESSION_TTL = dt.timedelta(hours=12)
_HASHING = threading.BoundedSemaphore(4)  # scrypt takes ~16 MiB per hash: cap the concurrent ones

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, role TEXT NOT NULL, agent_id TEXT,
    pw_salt BLOB NOT NULL, pw_hash BLOB NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS login_sessions (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL REFERENCES users(username),
    csrf TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, item_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('confirm','override','appeal','appeal_decision')),
    machine_points REAL, new_points REAL, comment TEXT NOT NULL DEFAULT '',
    user TEXT NOT NULL, role TEXT NOT NULL, created_at TEXT NOT NULL, run_id TEXT);
CREATE INDEX IF NOT EXISTS reviews_call ON reviews(call_id, item_id, id);
CREATE TRIGGER IF NOT EXISTS reviews_no_update BEFORE UPDATE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews is append-only'); END;
CREATE TRIGGER IF NOT EXISTS reviews_no_delete BEFORE DELETE ON reviews
    BEGIN SELECT RAISE(ABORT, 'reviews is append-only'); END;
"""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    agent_id: Optional[str] = None


@dataclass(frozen=True)
class LoginSession:
    token: str
    csrf: str
    user: User


def hash_password(password: str, salt: bytes) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a database file of an older version up to date (columns are only ever added)."""
    cols = {r["name"] for r in con.execute("PRAGMA table_info(reviews)")}
    if "run_id" not in cols:
        con.execute("ALTER TABLE reviews ADD COLUMN run_id TEXT")
        log.info("review database: added reviews.run_id (older events keep an empty run id)")


def _in_run(ev, run_id: Optional[str]) -> bool:
    """Whether an event counts for the session's current ``run_id`` (None: every event counts)."""
    return run_id is None or ev["run_id"] is None or ev["run_id"] == run_id


def current_state(history: list[dict]) -> dict[str, dict]:
    """From ``ReviewDB.history`` rows: the latest current-run event per item, plus ``points``."""
    state: dict[str, dict] = {}
    for ev in history:
        if not ev["current_run"]:
            continue
        prev = state.get(ev["item_id"], {})
        points = ev["new_points"] if ev["action"] != "appeal" else prev.get("points")
        state[ev["item_id"]] = {**ev, "points": points}
    return state


class ReviewDB:
    """One connection per thread; every write is its own transaction."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as con:
                con.executescript(_SCHEMA)
                _migrate(con)
        except (sqlite3.Error, OSError) as exc:
            raise SetupError(f"cannot open the review database {self.path} ({exc}); "
                             "pass a writable --db path") from None
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    @property
    def con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    # -- users ---------------------------------------------------------------------------------------
    def add_user(self, username: str, password: str, role: str, agent_id: Optional[str] = None) -> User:
        if role not in ROLES:
            raise SetupError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if role == "agent" and not agent_id:
            raise SetupError("an agent user needs --agent-id (the agent_id in the results, e.g. A1001)")
        if not username or len(password) < 8:
            raise SetupError("give a user name and a password of at least 8 characters")
        salt = secrets.token_bytes(16)
        try:
            self.con.execute("INSERT INTO users VALUES (?,?,?,?,?,?)",
                             (username, role, agent_id, salt, hash_password(password, salt), _now().isoformat()))
        except sqlite3.IntegrityError:
            raise SetupError(f"user {username!r} already exists; pick another name") from None
        return User(username, role, agent_id)

    def users(self) -> list[User]:
        rows = self.con.execute("SELECT username, role, agent_id FROM users ORDER BY username").fetchall()
        return [User(r["username"], r["role"], r["agent_id"]) for r in rows]

    def check_password(self, username: str, password: str) -> Optional[User]:
        row = self.con.execute("SELECT * FROM users WHERE username=?", (username,)).fetchone()
        if row is None:
            hash_password(password, b"0" * 16)  # same cost for unknown users
            return None
        if not hmac.compare_digest(hash_password(password, row["pw_salt"]), row["pw_hash"]):
            return None
        return User(row["username"], row["role"], row["agent_id"])

    # -- login sessions ------------------------------------------------------------------------------
    def create_session(self, user: User) -> LoginSession:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        self.con.execute("DELETE FROM login_sessions WHERE expires_at < ?", (_now().isoformat(),))
        self.con.execute("INSERT INTO login_sessions VALUES (?,?,?,?)",
                         (_token_hash(token), user.username, csrf, (_now() + SESSION_TTL).isoformat()))
        return LoginSession(token, csrf, user)

    def get_session(self, token: Optional[str]) -> Optional[LoginSession]:
        if not token:
            return None
        row = self.con.execute(
            "SELECT s.csrf, s.expires_at, u.username, u.role, u.agent_id FROM login_sessions s "
            "JOIN users u USING (username) WHERE s.token_hash=?", (_token_hash(token),)).fetchone()
        if row is None or dt.datetime.fromisoformat(row["expires_at"]) < _now():
            return None
        return LoginSession(token, row["csrf"], User(row["username"], row["role"], row["agent_id"]))

    def end_session(self, token: str) -> None:
        self.con.execute("DELETE FROM login_sessions WHERE token_hash=?", (_token_hash(token),))

    # -- reviews -------------------------------------------------------------------------------------
    def add_review(self, *, call_id: str, item_id: str, action: str, machine_points: Optional[float],
                   new_points: Optional[float], comment: str, user: User, run_id: Optional[str]) -> int:
        if action not in ACTIONS:
            raise ValueError(f"unknown review action {action!r}")
        cur = self.con.execute(
            "INSERT INTO reviews (call_id, item_id, action, machine_points, new_points, comment, user, role, "
            "created_at, run_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (call_id, item_id, action, machine_points, new_points, comment, user.username, user.role,
             _now().isoformat(timespec="seconds"), run_id))
        log.info("review %s by %s on %s/%s", action, user.username, call_id, item_id)
        return int(cur.lastrowid)

    def history(self, call_id: str, run_id: Optional[str] = None) -> list[dict]:
        """Every event of one call; ``current_run`` is False for events made on an earlier run."""
        rows = self.con.execute("SELECT * FROM reviews WHERE call_id=? ORDER BY id", (call_id,)).fetchall()
        return [{**r, "current_run": _in_run(r, run_id)} for r in map(dict, rows)]

    def current(self, call_id: str, run_id: Optional[str] = None) -> dict[str, dict]:
        """Latest event per item of one call's ``run_id``, plus ``points``: the effective (reviewed) points."""
        return current_state(self.history(call_id, run_id))

    def calibration(self, runs: Optional[dict[str, str]] = None) -> list[dict]:
        """Per item: reviewer agreement with the machine over each item's latest confirm/override.

        ``runs`` maps call_id -> the session's current run_id: only events of that run count (calls
        not in ``runs`` are left out).  None counts every event.
        """
        rows = self.con.execute(
            "SELECT call_id, item_id, action, machine_points, new_points, run_id FROM reviews "
            "WHERE action IN ('confirm','override') ORDER BY id").fetchall()
        latest: dict[tuple[str, str], sqlite3.Row] = {}
        for r in rows:
            if runs is None or (r["call_id"] in runs and _in_run(r, runs[r["call_id"]])):
                latest[(r["call_id"], r["item_id"])] = r
        per: dict[str, list] = {}
        for r in sorted(latest.values(), key=lambda r: r["item_id"]):
            per.setdefault(r["item_id"], []).append(r)
        out = []
        for item_id, evs in per.items():
            deltas = [abs((e["new_points"] or 0.0) - (e["machine_points"] or 0.0)) for e in evs]
            agree = sum(1 for e, d in zip(evs, deltas) if e["action"] == "confirm" or d < 1e-9)
            out.append({"item_id": item_id, "n_reviewed": len(evs), "agreement": round(agree / len(evs), 4),
                        "mean_abs_change": round(sum(deltas) / len(evs), 3),
                        "n_override": sum(1 for e in evs if e["action"] == "override")})
        return out
