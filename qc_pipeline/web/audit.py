"""PIPL audit trail: who did what, when, on which call / recording / export, from where.

One row per request of a logged-in user (every read and every change), per login attempt and per
account change made on the command line.  Rows live in the review database (table ``audit``) and are
append-only twice over: triggers refuse UPDATE/DELETE, and each row carries
``hash = HMAC-SHA256(key, prev_hash + canonical JSON of the row)``, so an edited, deleted or inserted
row breaks the chain at that row.  The key sits in a separate 0600 file next to the database
(``<db>.audit-key``): whoever has only the database cannot forge a valid chain.  Dropping rows from the
end is caught by ``sqlite_sequence`` (ids are never reused) and by comparing the head that ``verify``
prints with one noted earlier.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from qc_pipeline.errors import SetupError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
FIELDS = ("id", "at", "user", "role", "action", "call_id", "target", "address", "status", "detail")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, call_id TEXT, target TEXT, address TEXT, status INTEGER, detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS audit_call ON audit(call_id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""


def _canonical(row: dict) -> bytes:
    return json.dumps([row[f] for f in FIELDS], ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    n_rows: int
    head_id: int
    head_hash: str
    problems: tuple[str, ...]


class AuditLog:
    def __init__(self, db_path: str | os.PathLike) -> None:
        from qc_pipeline.web.db import ThreadConnections, secure_file

        self.path = Path(db_path)
        self._cons = ThreadConnections(self.path, "NORMAL")  # WAL: a crash loses at most the last rows, not the chain
        self.key_path = Path(str(self.path) + ".audit-key")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            secure_file(self.path)
            if not self.key_path.exists():
                fd = os.open(self.key_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
            self._key = bytes.fromhex(self.key_path.read_text().strip())
            with self._cons.open() as con:
                con.executescript(_SCHEMA)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise SetupError(f"cannot open the audit trail in {self.path} ({exc})") from None
        self._lock = threading.Lock()

    @property
    def con(self) -> sqlite3.Connection:
        return self._cons.get()

    def _hash(self, prev: str, row: dict) -> str:
        return hmac.new(self._key, prev.encode() + _canonical(row), hashlib.sha256).hexdigest()

    def record(self, *, user: str, role: str, action: str, call_id: Optional[str] = None,
               target: Optional[str] = None, address: Optional[str] = None, status: Optional[int] = None,
               detail: Optional[dict] = None) -> int:
        con = self.con
        with self._lock:  # one writer per process; BEGIN IMMEDIATE orders writers of several processes
            con.execute("BEGIN IMMEDIATE")
            try:
                last = con.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
                seq = con.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
                row = {"id": max(last["id"] if last else 0, seq["seq"] if seq else 0) + 1,
                       "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                       "user": user, "role": role, "action": action, "call_id": call_id, "target": target,
                       "address": address, "status": status,
                       "detail": json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str)}
                prev = last["hash"] if last else GENESIS
                con.execute("INSERT INTO audit (id, at, user, role, action, call_id, target, address, status, "
                            "detail, prev_hash, hash) VALUES (:id,:at,:user,:role,:action,:call_id,:target,"
                            ":address,:status,:detail,:prev,:hash)", {**row, "prev": prev,
                                                                       "hash": self._hash(prev, row)})
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return row["id"]

    def verify(self) -> Verdict:
        problems: list[str] = []
        prev, expect_id, n, head = GENESIS, 1, 0, (0, GENESIS)
        for r in self.con.execute("SELECT * FROM audit ORDER BY id"):
            row = dict(r)
            n += 1
            if row["id"] != expect_id:
                problems.append(f"row {row['id']}: rows {expect_id}..{row['id'] - 1} are missing")
            if row["prev_hash"] != prev:
                problems.append(f"row {row['id']}: prev_hash does not link to the row before")
            if not hmac.compare_digest(row["hash"], self._hash(row["prev_hash"], row)):
                problems.append(f"row {row['id']}: contents changed (hash mismatch)")
            prev, expect_id, head = row["hash"], row["id"] + 1, (row["id"], row["hash"])
            if len(problems) > 50:
                problems.append("… (stopped after 50 problems)")
                break
        seq = self.con.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
        if seq and seq["seq"] > head[0]:
            problems.append(f"rows {head[0] + 1}..{seq['seq']} were deleted from the end")
        return Verdict(not problems, n, head[0], head[1], tuple(problems))

    def rows(self, since: Optional[dt.datetime] = None, call_id: Optional[str] = None,
             limit: Optional[int] = None) -> Iterator[dict]:
        sql, args = "SELECT * FROM audit WHERE 1=1", []
        if since is not None:
            sql += " AND at >= ?"
            args.append(since.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds"))
        if call_id is not None:
            sql += " AND call_id = ?"
            args.append(call_id)
        sql += " ORDER BY id" + (" DESC" if limit else "") + (f" LIMIT {int(limit)}" if limit else "")
        for r in self.con.execute(sql, args):
            row = dict(r)
            row["detail"] = json.loads(row["detail"])
            yield row
