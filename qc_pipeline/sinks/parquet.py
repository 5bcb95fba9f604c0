"""Resumable, atomic Parquet sink.

Layout (hive-partitioned by run date)::

    OUT/sessions/run_date=2026-11-23/part-<run_id>-00000.parquet
    OUT/utterances/run_date=2026-11-23/part-<run_id>-00000.parquet

A flush writes the dependent tables' parts first and the sessions part last, each to a temp file
renamed into place.  A sessions part is the commit marker: on open, dependent parts without their
sessions twin (left by a crash) and temp files are removed, and every ``call_id`` in a sessions part
counts as done -- so a re-run skips finished calls, loses nothing and duplicates nothing.  A call
retried with ``--retry-failed`` gets a second sessions row in a later part: the row with the latest
``processed_at`` wins when read.  That rule is this module's (:func:`latest_by_call`, :data:`LATEST_FIRST`):
``read_table(..., latest=True)``, the resume and the review app's read model all take it from here.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from qc_pipeline.errors import SetupError
from qc_pipeline.records import CallRecord
from qc_pipeline.schema import SCHEMA_VERSION, TABLES
from qc_pipeline.sinks.rows import score_rows, session_row, summary_rows, utterance_rows
from qc_pipeline.text_safety import utf8_safe

log = logging.getLogger(__name__)

# Written before the sessions part of the same name; removed on start when that part is missing.
DEPENDENT_TABLES = tuple(t for t in TABLES if t != "sessions")

_SPACE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _io_errno(exc: OSError) -> Optional[int]:
    """The errno of an OSError; pyarrow's IO errors carry it only in the message ("[errno 28] ...")."""
    if exc.errno:
        return exc.errno
    text = str(exc).lower()
    for code in (*_SPACE_ERRNOS, errno.EROFS, errno.EACCES, errno.EPERM):
        if f"errno {code}]" in text:
            return code
    return None


def write_failure_hint(exc: OSError) -> str:
    """What went wrong, in words that name the fix."""
    code = _io_errno(exc)
    if code in _SPACE_ERRNOS:
        return f"no space left ({os.strerror(code)}); free disk space or choose another --out"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"not writable ({os.strerror(code)}); choose another --out or fix its permissions"
    return f"{exc.strerror or exc}; check the disk or choose another --out"


@dataclass(frozen=True)
class Committed:
    """What an output folder already holds, by call_id: ``done`` calls are skipped; ``retry`` ones (latest row
    failed with a reason given to ``--retry-failed``) are processed again."""

    done: frozenset[str]
    retry: frozenset[str]


def output_unwritable(folder: str | os.PathLike, exc: OSError) -> SetupError:
    """The set-up error for an output folder that cannot be written (the lock or the sink's probe)."""
    return SetupError(f"output folder {folder} is not writable: {write_failure_hint(exc)}")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def parts(root: Path, table: str, date: Optional[str] = None) -> list[Path]:
    return sorted((root / table).glob(f"run_date={date or '*'}/part-*.parquet"))


def check_version(schema: pa.Schema, where: Path) -> None:
    """Refuse to mix schema versions in one results folder (readers use one schema per table)."""
    version = (schema.metadata or {}).get(b"qc_pipeline.schema_version", b"?").decode()
    if version != SCHEMA_VERSION:
        raise SetupError(f"{where} was written with schema version {version}; this qc-pipeline writes version "
                         f"{SCHEMA_VERSION}. Write to a new --out folder (or read the old one with the old version)")


# The latest sessions row wins: a call's result is its sessions row with the newest ``processed_at``, a tie
# going to the later part (part paths sort by run date, then run id and sequence).  Python readers apply it
# with latest_by_call() to rows read in part order; SQL readers order by LATEST_FIRST, over a ``part``
# column that holds the part's path below its table folder (the review app's read model).
LATEST_FIRST = "processed_at DESC, part DESC"
T = TypeVar("T")


def latest_by_call(rows: Iterable[tuple[str, Any, T]]) -> dict[str, T]:
    """``call_id -> value`` of each call's latest row, from ``(call_id, processed_at, value)`` in part order."""
    best: dict[str, tuple[Any, T]] = {}
    for cid, at, value in rows:
        if cid not in best or at >= best[cid][0]:
            best[cid] = (at, value)
    return {cid: value for cid, (_, value) in best.items()}


def session_states(out_dir: str | os.PathLike) -> dict[str, tuple[str, Optional[str]]]:
    """``call_id -> (status, error_reason)`` of each call's latest committed sessions row."""
    def rows() -> Iterator[tuple[str, Any, tuple[str, Optional[str]]]]:
        for part in parts(Path(out_dir), "sessions"):
            try:
                t = pq.read_table(part, columns=["call_id", "status", "error_reason", "processed_at"])
            except Exception as exc:  # an unreadable part is skipped, never fatal
                log.warning("ignoring unreadable part %s (%s); its calls will be redone", part, exc)
                continue
            check_version(t.schema, part)
            for cid, status, reason, at in zip(*(t.column(c).to_pylist() for c in t.column_names)):
                yield cid, at, (status, reason)

    return latest_by_call(rows())


def read_table(out_dir: str | os.PathLike, table: str, latest: bool = False) -> pa.Table:
    """All committed rows of a table (for scripts and tests).  ``latest``: only the rows of each call's
    latest sessions row (a call retried with ``--retry-failed`` has an older, failed one)."""
    schema = TABLES[table]
    root = Path(out_dir)
    found = parts(root, table)
    data = pa.concat_tables([pq.read_table(p, schema=schema) for p in found]) if found else schema.empty_table()
    if not latest or not data.num_rows:
        return data
    sessions = data if table == "sessions" else read_table(root, "sessions")
    keep = latest_by_call((cid, at, (run_id, at)) for cid, run_id, at in
                          zip(*(sessions.column(c).to_pylist() for c in ("call_id", "run_id", "processed_at"))))
    if table == "sessions":
        mask = [keep[c] == (r, a) for c, r, a in zip(*(data.column(c).to_pylist()
                                                       for c in ("call_id", "run_id", "processed_at")))]
    else:
        mask = [keep.get(c, (None,))[0] == r for c, r in zip(data.column("call_id").to_pylist(),
                                                               data.column("run_id").to_pylist())]
    return data.filter(pa.array(mask, pa.bool_())) if not all(mask) else data


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort: not every file system supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yields a temp path to write; on success it is synced and renamed to ``path``, else removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_atomic(table: pa.Table, path: Path, compression: Optional[str]) -> None:
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression=compression)


def remove_uncommitted(root: Path) -> None:
    """Temp files, and dependent parts without their sessions twin (a flush cut short by a crash)."""
    for tmp in root.glob("*/run_date=*/*.tmp"):
        tmp.unlink(missing_ok=True)
    committed = {p.relative_to(root / "sessions") for p in parts(root, "sessions")}
    for table in DEPENDENT_TABLES:
        for part in parts(root, table):
            if part.relative_to(root / table) not in committed:
                log.warning("removing uncommitted part %s left by an interrupted run", part)
                part.unlink()


class ParquetSink:
    """The Parquet tables under ``out_dir``; see the module docstring for the commit protocol.

    Results are flushed every ``flush_every`` calls or ``flush_interval_s`` seconds, whichever comes
    first: big parts for a fast night, and a crash never redoes more than that much work.
    """

    def __init__(self, out_dir: str | os.PathLike, *, run_id: str, config_hash: str, asr_model: str = "",
                 asr_sha: str = "", flush_every: int = 500, flush_interval_s: float = 300.0,
                 compression: str = "zstd", run_date: Optional[dt.date] = None) -> None:
        self.root = Path(out_dir)
        self.run_id = run_id
        self.meta = {"run_id": run_id, "asr_model": asr_model, "asr_sha": asr_sha, "config_hash": config_hash}
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.compression = None if compression == "none" else compression
        self.partition = f"run_date={(run_date or dt.date.today()).isoformat()}"
        self._rows: dict[str, list[dict]] = {name: [] for name in TABLES}
        self._seq = 0
        self._failed = False
        self._last_flush = time.monotonic()

    # -- the sink protocol -------------------------------------------------------------------------
    def open(self) -> None:
        """Check the folder is writable, finish or undo an interrupted compaction, drop uncommitted parts."""
        from qc_pipeline.sinks.compact import recover

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise output_unwritable(self.root, exc) from None
        recover(self.root)
        remove_uncommitted(self.root)

    def committed(self, retry: Iterable[str] = ()) -> Committed:
        """The calls with a committed sessions row (read once), split by whether their latest row failed
        with a reason in ``retry``."""
        retry = frozenset(retry)
        states = session_states(self.root)
        again = frozenset(cid for cid, (status, reason) in states.items() if status == "failed" and reason in retry)
        return Committed(done=frozenset(states.keys() - again), retry=again)

    def add(self, rec: CallRecord) -> None:
        self._rows["sessions"].append(utf8_safe(session_row(rec, **self.meta)))
        self._rows["utterances"].extend(utf8_safe(list(utterance_rows(rec, run_id=self.run_id))))
        scores, items = score_rows(rec, run_id=self.run_id)
        self._rows["scores"].extend(utf8_safe(scores))
        self._rows["item_results"].extend(utf8_safe(items))
        self._rows["summaries"].extend(utf8_safe(summary_rows(rec, run_id=self.run_id)))
        if (len(self._rows["sessions"]) >= self.flush_every
                or time.monotonic() - self._last_flush >= self.flush_interval_s):
            self.flush()

    def flush(self) -> None:
        n_calls = len(self._rows["sessions"])
        self._last_flush = time.monotonic()
        if not n_calls or self._failed:
            return
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        try:
            for table in DEPENDENT_TABLES + ("sessions",):  # sessions last: it is the commit marker
                rows = pa.Table.from_pylist(self._rows[table], schema=TABLES[table])
                write_atomic(rows, self.root / table / self.partition / name, self.compression)
        except Exception as exc:
            self._failed = True  # close() must not try again and fail a second time
            self._discard(name)
            if not isinstance(exc, OSError):
                raise
            raise SetupError(f"cannot write results to {self.root}: {write_failure_hint(exc)}. Calls written "
                             "so far are safe; re-run the same command to resume") from None
        self._seq += 1
        self._rows = {t: [] for t in TABLES}

    def close(self) -> None:
        self.flush()

    def _discard(self, name: str) -> None:
        """Best effort after a failed flush: remove this flush's dependent parts (no sessions twin)."""
        for table in DEPENDENT_TABLES:
            try:
                (self.root / table / self.partition / name).unlink(missing_ok=True)
            except OSError:
                pass  # removed on the next start anyway


