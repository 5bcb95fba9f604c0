"""Durable review store (SQLite, WAL): users, login sessions, the review history and the workflow log.

``reviews`` is an event log: confirm | override | appeal | appeal_decision; ``workflow`` another one:
claim | release | done.  Triggers make UPDATE and DELETE of both raise.  Each event records the
``run_id`` of the session it was made on; the current state of an item (or a call) is its latest event
*of the session's current run* (a re-processed call starts unreviewed; events from before run
tracking, with an empty run_id, count for any run).  The Parquet results are never rewritten.

The database file (and its -wal/-shm) is created 0600.  The audit trail lives in the same file
(:mod:`qc_pipeline.web.audit`).
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
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

ROLES = ("reviewer", "trainer", "agent", "admin")
ACTIONS = ("confirm", "override", "appeal", "appeal_decision")
WORKFLOW_ACTIONS = ("claim", "release", "done")
SESSION_TTL = dt.timedelta(hours=12)          # absolute lifetime of a login
IDLE_TIMEOUT = dt.timedelta(minutes=30)       # a login unused this long ends
_TOUCH_EVERY = dt.timedelta(seconds=60)       # last_seen is written at most this often
MIN_PASSWORD = 10
_COMMON = {"password", "passw0rd", "qwertyuiop", "1234567890", "0123456789", "abcdefghij", "iloveyou",
           "admin12345", "password123", "qwerty1234", "1q2w3e4r5t", "a123456789", "woaini1314"}
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
CREATE TABLE IF NOT EXISTS workflow (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, run_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('claim','release','done')), user TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS workflow_call ON workflow(call_id, id);
CREATE TRIGGER IF NOT EXISTS workflow_no_update BEFORE UPDATE ON workflow
    BEGIN SELECT RAISE(ABORT, 'workflow is append-only'); END;
CREATE TRIGGER IF NOT EXISTS workflow_no_delete BEFORE DELETE ON workflow
    BEGIN SELECT RAISE(ABORT, 'workflow is append-only'); END;
"""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    agent_id: Optional[str] = None
    disabled: bool = False


@dataclass(frozen=True)
class LoginSession:
    token: str
    csrf: str
    user: User


def hash_password(password: str, salt: bytes) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)


def name_key(username: str) -> str:
    """Case- and width-insensitive form of a user name ("Rev1" and "ｒｅｖ１" are "rev1")."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


def check_username(username: str) -> None:
    if not username or len(username) > 64 or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in username):
        raise SetupError("a user name is 1-64 characters without spaces or control characters")


def check_password_policy(username: str, password: str) -> None:
    """At least 10 characters of at least two kinds (letters, digits, others incl. Chinese), not the user
    name, not one repeated character, not a well-known password."""
    kinds = sum((any(c.isalpha() and c.isascii() for c in password), any(c.isdigit() for c in password),
                 any(not (c.isascii() and c.isalnum()) for c in password)))
    low = password.casefold()
    if len(password) < MIN_PASSWORD:
        raise SetupError(f"the password needs at least {MIN_PASSWORD} characters")
    if kinds < 2:
        raise SetupError("the password needs two kinds of characters (letters, digits, others)")
    if len(set(password)) < 4 or low in _COMMON:
        raise SetupError("the password is too easy to guess; choose another")
    if len(username) >= 3 and name_key(username) in low:
        raise SetupError("the password must not contain the user name")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def secure_file(path: Path) -> None:
    """Create ``path`` 0600 if missing; tighten it and its -wal/-shm/-journal files if they exist."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for p in (path, *(Path(str(path) + s) for s in ("-wal", "-shm", "-journal"))):
        try:
            os.chmod(p, 0o600)
        except FileNotFoundError:
            pass


class ThreadConnections:
    """One SQLite connection per thread (WAL, autocommit; ``synchronous`` FULL or NORMAL)."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path, self.synchronous = path, synchronous
        self._local = threading.local()

    def open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self.synchronous}")
        con.execute("PRAGMA foreign_keys=ON")
        return con

    def get(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self.open()
        return con


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r["name"] for r in con.execute(f"PRAGMA table_info({table})")}


def _migrate(con: sqlite3.Connection) -> None:
    """Bring a database file of an older version up to date (columns are only ever added)."""
    if "run_id" not in _columns(con, "reviews"):
        con.execute("ALTER TABLE reviews ADD COLUMN run_id TEXT")
        log.info("review database: added reviews.run_id (older events keep an empty run id)")
    users = _columns(con, "users")
    if "name_key" not in users:
        con.execute("ALTER TABLE users ADD COLUMN name_key TEXT")
        con.execute("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0")
        rows = con.execute("SELECT username FROM users").fetchall()
        seen: dict[str, str] = {}
        for r in rows:
            key = name_key(r["username"])
            if key in seen:
                raise SetupError(f"users {seen[key]!r} and {r['username']!r} differ only in case; names are "
                                 "case-insensitive now: remove one with an older version, then open it again")
            seen[key] = r["username"]
            con.execute("UPDATE users SET name_key=? WHERE username=?", (key, r["username"]))
    con.execute("CREATE UNIQUE INDEX IF NOT EXISTS users_name_key ON users(name_key)")
    if "last_seen" not in _columns(con, "login_sessions"):
        con.execute("ALTER TABLE login_sessions ADD COLUMN last_seen TEXT")
        con.execute("ALTER TABLE login_sessions ADD COLUMN address TEXT")


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
        self._cons = ThreadConnections(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            secure_file(self.path)
            with self._cons.open() as con:
                con.executescript(_SCHEMA)
                _migrate(con)
            secure_file(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise SetupError(f"cannot open the review database {self.path} ({exc}); "
                             "pass a writable --db path") from None

    @property
    def con(self) -> sqlite3.Connection:
        return self._cons.get()

    # -- users ---------------------------------------------------------------------------------------
    @staticmethod
    def _user(row) -> User:
        return User(row["username"], row["role"], row["agent_id"], bool(row["disabled"]))

    def _check_role(self, role: str, agent_id: Optional[str]) -> None:
        if role not in ROLES:
            raise SetupError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if role == "agent" and not agent_id:
            raise SetupError("an agent user needs --agent-id (the agent_id in the results, e.g. A1001)")

    def add_user(self, username: str, password: str, role: str, agent_id: Optional[str] = None) -> User:
        self._check_role(role, agent_id)
        check_username(username)
        check_password_policy(username, password)
        salt = secrets.token_bytes(16)
        try:
            self.con.execute("INSERT INTO users (username, role, agent_id, pw_salt, pw_hash, created_at, name_key, "
                             "disabled) VALUES (?,?,?,?,?,?,?,0)",
                             (username, role, agent_id if role == "agent" else None, salt,
                              hash_password(password, salt), _now().isoformat(), name_key(username)))
        except sqlite3.IntegrityError:
            raise SetupError(f"user {username!r} already exists (names are case-insensitive); pick another") \
                from None
        return User(username, role, agent_id if role == "agent" else None)

    def users(self) -> list[User]:
        rows = self.con.execute("SELECT username, role, agent_id, disabled FROM users ORDER BY name_key").fetchall()
        return [self._user(r) for r in rows]

    def user(self, username: str) -> User:
        row = self.con.execute("SELECT * FROM users WHERE name_key=?", (name_key(username),)).fetchone()
        if row is None:
            raise SetupError(f"no user {username!r}; `qc-pipeline users list` shows them")
        return self._user(row)

    def set_disabled(self, username: str, disabled: bool) -> User:
        u = self.user(username)
        self.con.execute("UPDATE users SET disabled=? WHERE username=?", (int(disabled), u.username))
        if disabled:
            self.revoke_sessions(u.username)
        return self.user(u.username)

    def set_role(self, username: str, role: str, agent_id: Optional[str] = None) -> User:
        u = self.user(username)
        self._check_role(role, agent_id)
        self.con.execute("UPDATE users SET role=?, agent_id=? WHERE username=?",
                         (role, agent_id if role == "agent" else None, u.username))
        self.revoke_sessions(u.username)
        return self.user(u.username)

    def reset_password(self, username: str, password: str) -> User:
        u = self.user(username)
        check_password_policy(u.username, password)
        salt = secrets.token_bytes(16)
        self.con.execute("UPDATE users SET pw_salt=?, pw_hash=? WHERE username=?",
                         (salt, hash_password(password, salt), u.username))
        self.revoke_sessions(u.username)
        return u

    def check_password(self, username: str, password: str) -> Optional[User]:
        """The user for a right password of an enabled account; None otherwise (same cost either way)."""
        row = self.con.execute("SELECT * FROM users WHERE name_key=?", (name_key(username),)).fetchone()
        if row is None:
            hash_password(password, b"0" * 16)  # same cost for unknown users
            return None
        ok = hmac.compare_digest(hash_password(password, row["pw_salt"]), row["pw_hash"])
        return self._user(row) if ok and not row["disabled"] else None

    # -- login sessions ------------------------------------------------------------------------------
    def create_session(self, user: User, address: str = "") -> LoginSession:
        """A new login ends the user's other logins (one browser at a time) and deletes expired ones."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = _now()
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM login_sessions WHERE expires_at < ? OR last_seen < ? OR username=?",
                        (now.isoformat(), (now - IDLE_TIMEOUT).isoformat(), user.username))
            con.execute("INSERT INTO login_sessions (token_hash, username, csrf, expires_at, last_seen, address) "
                        "VALUES (?,?,?,?,?,?)", (_token_hash(token), user.username, csrf,
                                                  (now + SESSION_TTL).isoformat(), now.isoformat(), address))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return LoginSession(token, csrf, user)

    def get_session(self, token: Optional[str]) -> Optional[LoginSession]:
        if not token:
            return None
        row = self.con.execute(
            "SELECT s.csrf, s.expires_at, s.last_seen, u.username, u.role, u.agent_id, u.disabled "
            "FROM login_sessions s JOIN users u USING (username) WHERE s.token_hash=?", (_token_hash(token),)).fetchone()
        if row is None or row["disabled"]:
            return None
        now = _now()
        seen = dt.datetime.fromisoformat(row["last_seen"]) if row["last_seen"] else now
        if dt.datetime.fromisoformat(row["expires_at"]) < now or now - seen > IDLE_TIMEOUT:
            self.end_session(token)
            return None
        if now - seen > _TOUCH_EVERY:
            self.con.execute("UPDATE login_sessions SET last_seen=? WHERE token_hash=?",
                             (now.isoformat(), _token_hash(token)))
        return LoginSession(token, row["csrf"], self._user(row))

    def end_session(self, token: str) -> None:
        self.con.execute("DELETE FROM login_sessions WHERE token_hash=?", (_token_hash(token),))

    def revoke_sessions(self, username: str) -> int:
        return self.con.execute("DELETE FROM login_sessions WHERE username=?", (username,)).rowcount

    def active_logins(self) -> dict[str, int]:
        cutoff = (_now() - IDLE_TIMEOUT).isoformat()
        return dict(self.con.execute("SELECT username, count(*) FROM login_sessions WHERE expires_at > ? AND "
                                     "last_seen > ? GROUP BY username", (_now().isoformat(), cutoff)).fetchall())

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

    def verdicts(self) -> list[dict]:
        """Each (call, item, run, reviewer)'s latest confirm/override: the input of calibration."""
        rows = self.con.execute(
            "SELECT r.call_id, r.item_id, r.run_id, r.user, r.action, r.machine_points, r.new_points FROM reviews r "
            "JOIN (SELECT max(id) AS id FROM reviews WHERE action IN ('confirm','override') "
            "GROUP BY call_id, item_id, coalesce(run_id, ''), user) m USING (id) ORDER BY r.id").fetchall()
        return [dict(r) for r in rows]

    def pending_appeals(self) -> list[dict]:
        """Appeals that are the latest event of their (call, item, run): waiting for an admin's decision."""
        rows = self.con.execute(
            "SELECT r.* FROM reviews r JOIN (SELECT max(id) AS id FROM reviews GROUP BY call_id, item_id, "
            "coalesce(run_id, '')) m USING (id) WHERE r.action = 'appeal' ORDER BY r.id").fetchall()
        return [dict(r) for r in rows]

    # -- workflow ------------------------------------------------------------------------------------
    def workflow_event(self, call_id: str, run_id: str, action: str, user: User) -> None:
        if action not in WORKFLOW_ACTIONS:
            raise ValueError(f"unknown workflow action {action!r}")
        self.con.execute("INSERT INTO workflow (call_id, run_id, action, user, created_at) VALUES (?,?,?,?,?)",
                         (call_id, run_id, action, user.username, _now().isoformat(timespec="seconds")))

    def workflow_state(self, call_id: str, run_id: str) -> tuple[str, Optional[str]]:
        """(pending | claimed | done, the user who claimed / finished it) for the call's current run."""
        row = self.con.execute("SELECT action, user FROM workflow WHERE call_id=? AND run_id=? ORDER BY id DESC "
                               "LIMIT 1", (call_id, run_id)).fetchone()
        return _state(row)

    def workflow_states(self) -> list[tuple[str, str, str, Optional[str]]]:
        """(call_id, run_id, state, user) of every call's latest workflow event (the read model's mirror)."""
        rows = self.con.execute("SELECT w.call_id, w.run_id, w.action, w.user FROM workflow w JOIN "
                                "(SELECT max(id) AS id FROM workflow GROUP BY call_id) m USING (id)").fetchall()
        return [(r["call_id"], r["run_id"], *_state(r)) for r in rows]


def _state(row) -> tuple[str, Optional[str]]:
    if row is None or row["action"] == "release":
        return "pending", None
    return ("claimed" if row["action"] == "claim" else "done"), row["user"]
