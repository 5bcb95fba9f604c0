"""Read model of a results folder: DuckDB tables over the committed Parquet parts, kept up to date in the
background.

The pipeline writes ``DIR/<table>/run_date=YYYY-MM-DD/part-<run>-<seq>.parquet``; a sessions part is the
commit marker of its twins (same relative name) in the other tables.  A background thread lists the
partition folders (only those whose mtime changed), ingests new sessions parts and their twins in
batches (newest day first) and keeps ``cur``: one row per call, its newest committed run joined with
that run's score, failed items, stored flags and summary (call type / reason; none for older runs).  Each
batch is one DuckDB transaction; requests read their own snapshot and never wait for a refresh.  The tables
live in a DuckDB file (default next to the review database) so a restart only ingests what is new.  Parquet files are never written.

Review reasons are the stored flags only (``sessions.flags`` + ``scores.flags``): nothing is
re-derived here.  Columns are read by name; ``started_at`` may be text or a timestamp, an absent table
or an unreadable part is skipped (logged), never fatal.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pyarrow.compute as pc
import pyarrow.parquet as pq

from qc_pipeline.errors import SetupError
from qc_pipeline.sinks.parquet import LATEST_FIRST
from qc_pipeline.web.queries import FROM, REASON_DIMS, SELECT_VIEW, SORT_EXPR, decode_cursor, encode_cursor, \
    reason_cube_sql, unsummarized_sql, view, where_clause
from qc_pipeline.web.views import DEFAULT_TZ, NO_AGENT, NO_TEAM, ItemView, ListQuery, Page, SessionView

log = logging.getLogger(__name__)

MODEL_VERSION = "4"
DEPENDENT = ("scores", "item_results", "utterances", "summaries")  # summaries: absent in older runs

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS parts (rel VARCHAR PRIMARY KEY, mtime_ns BIGINT, size BIGINT);
CREATE TABLE IF NOT EXISTS s_raw (part VARCHAR, call_id VARCHAR, kind VARCHAR, source_path VARCHAR,
    agent_id VARCHAR, team VARCHAR, queue VARCHAR, started_at TIMESTAMPTZ, status VARCHAR, error_reason VARCHAR,
    error_detail VARCHAR, duration_s DOUBLE, role_confidence DOUBLE, flags VARCHAR[], run_id VARCHAR,
    processed_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS sc_raw (part VARCHAR, call_id VARCHAR, run_id VARCHAR, total DOUBLE, grade VARCHAR,
    passed BOOLEAN, veto BOOLEAN, veto_items VARCHAR[], flags VARCHAR[], customer_emotion_index DOUBLE,
    escalation VARCHAR[]);
CREATE TABLE IF NOT EXISTS it_raw (part VARCHAR, call_id VARCHAR, run_id VARCHAR, item_id VARCHAR,
    item_name VARCHAR, applicable BOOLEAN, failed BOOLEAN);
CREATE TABLE IF NOT EXISTS u_txt (part VARCHAR, call_id VARCHAR, run_id VARCHAR, text VARCHAR);
CREATE TABLE IF NOT EXISTS su_raw (part VARCHAR, call_id VARCHAR, run_id VARCHAR, call_type VARCHAR,
    call_reason VARCHAR, resolved BOOLEAN, over_duration_target BOOLEAN);
CREATE TABLE IF NOT EXISTS cur (call_id VARCHAR PRIMARY KEY, run_id VARCHAR, part VARCHAR, kind VARCHAR,
    source_path VARCHAR, agent_id VARCHAR, team VARCHAR, queue VARCHAR, started_at TIMESTAMPTZ, day DATE,
    status VARCHAR, error_reason VARCHAR, error_detail VARCHAR, duration_s DOUBLE, role_confidence DOUBLE,
    processed_at TIMESTAMPTZ, total DOUBLE, grade VARCHAR, passed BOOLEAN, veto BOOLEAN, veto_items VARCHAR[],
    reasons VARCHAR[], failed_items VARCHAR[], escalation VARCHAR[], customer_emotion_index DOUBLE,
    skey VARCHAR, call_type VARCHAR, call_reason VARCHAR, resolved BOOLEAN, over_duration_target BOOLEAN);
CREATE TABLE IF NOT EXISTS wf (call_id VARCHAR PRIMARY KEY, run_id VARCHAR, state VARCHAR, user_name VARCHAR);
"""

# column lists read from the parts, by name (a part of an older/newer schema still reads)
_SELECT = {
    "sessions": "SELECT {part}, call_id, kind, source_path, agent_id, team, queue, "
                "TRY_CAST(started_at AS TIMESTAMPTZ), status, error_reason, error_detail, duration_s, "
                "role_confidence, coalesce(flags, []), run_id, processed_at FROM {src}",
    "scores": "SELECT {part}, call_id, run_id, total, grade, passed, veto, "
              "coalesce(veto_items, []), coalesce(flags, []), customer_emotion_index, coalesce(escalation, []) "
              "FROM {src}",
    # the last column is qc_pipeline.records.item_lost in SQL
    "item_results": "SELECT {part}, call_id, run_id, item_id, coalesce(item_name, item_id), "
                    "applicable, applicable AND (points < max_points OR coalesce(vetoed, false)) FROM {src}",
    "utterances": "SELECT {part}, call_id, run_id, string_agg(text, chr(10) ORDER BY turn_index) "
                  "FROM {src} GROUP BY ALL",
    "summaries": "SELECT {part}, call_id, run_id, call_type, reason, resolved, over_duration_target FROM {src}",
}
_RAW = {"sessions": "s_raw", "scores": "sc_raw", "item_results": "it_raw", "utterances": "u_txt",
        "summaries": "su_raw"}

# a call's current row: the sinks' "latest sessions row wins" rule (LATEST_FIRST), not a copy of it
_CUR_FROM_AFF = f"""
INSERT INTO cur
WITH s AS (SELECT * FROM s_raw WHERE call_id IN (SELECT call_id FROM aff)
           QUALIFY row_number() OVER (PARTITION BY call_id ORDER BY {LATEST_FIRST}) = 1),
sc AS (SELECT * FROM sc_raw WHERE call_id IN (SELECT call_id FROM aff)
       QUALIFY row_number() OVER (PARTITION BY call_id, run_id ORDER BY part DESC) = 1),
it AS (SELECT call_id, run_id, list_sort(list_distinct(list(item_id) FILTER (WHERE failed))) AS failed_items
       FROM it_raw WHERE call_id IN (SELECT call_id FROM aff) GROUP BY ALL),
su AS (SELECT * FROM su_raw WHERE call_id IN (SELECT call_id FROM aff)
       QUALIFY row_number() OVER (PARTITION BY call_id, run_id ORDER BY part DESC) = 1)
SELECT s.call_id, s.run_id, s.part, s.kind, s.source_path, s.agent_id, s.team, s.queue, s.started_at,
       CAST(timezone($tz, coalesce(s.started_at, s.processed_at)) AS DATE), s.status, s.error_reason, s.error_detail, s.duration_s,
       s.role_confidence, s.processed_at, sc.total, sc.grade, sc.passed, coalesce(sc.veto, false),
       coalesce(sc.veto_items, []), list_distinct(list_concat(s.flags, coalesce(sc.flags, []))),
       coalesce(it.failed_items, []), coalesce(sc.escalation, []), sc.customer_emotion_index,
       lower(s.call_id) || chr(1) || lower(coalesce(s.agent_id, '')), su.call_type, su.call_reason, su.resolved,
       su.over_duration_target
FROM s LEFT JOIN sc ON sc.call_id = s.call_id AND sc.run_id = s.run_id
       LEFT JOIN it ON it.call_id = s.call_id AND it.run_id = s.run_id
       LEFT JOIN su ON su.call_id = s.call_id AND su.run_id = s.run_id
"""

@dataclass
class Progress:
    parts_known: int = 0
    parts_pending: int = 0
    last_refresh: Optional[float] = None
    last_error: Optional[str] = None

    @property
    def complete(self) -> bool:
        return self.parts_pending == 0 and self.last_refresh is not None


class ReadModel:
    """DuckDB tables over one results folder.  Thread-safe: each thread reads through its own cursor."""

    def __init__(self, results: str | os.PathLike, path: str | os.PathLike, *, tz: str = DEFAULT_TZ,
                 refresh_s: float = 2.0, batch_parts: int = 400, memory_limit: str = "256MB",
                 threads: int = 2) -> None:
        import duckdb

        self.root = Path(results).resolve()
        if not (self.root / "sessions").is_dir():
            raise SetupError(f"{self.root} holds no results (no sessions/ folder); "
                             "run `qc-pipeline run ... --out DIR` first and pass that DIR as --results")
        self.path = Path(path)
        self.tz = tz
        self.refresh_s = refresh_s
        self.batch_parts = batch_parts
        self.progress = Progress()
        self._dirs: dict[Path, tuple[int, dict[str, tuple[int, int]]]] = {}  # partition dir -> (mtime, files)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._facets: Optional[dict] = None   # filter choices, recomputed after a refresh that changed data
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(self.path), config={"memory_limit": memory_limit, "threads": threads,
                                                                "preserve_insertion_order": False})
            os.chmod(self.path, 0o600)
        except (duckdb.Error, OSError) as exc:
            raise SetupError(f"cannot open the read model {self.path} ({exc}); pass a writable --db folder "
                             "or delete the file to rebuild it") from None
        self._init_schema()
        import pyarrow.dataset  # noqa: F401  (read_table(filters=...) needs it: imported now, not on a first page)

    # -- schema ---------------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        con = self._con
        con.execute(_DDL)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        want = {"version": MODEL_VERSION, "results": str(self.root), "tz": self.tz}
        if meta and meta != want:  # dropped, not emptied: an older version's tables have other columns
            log.info("read model %s was built for %s; rebuilding", self.path, meta)
            for t in ("parts", *_RAW.values(), "cur", "meta"):
                con.execute(f"DROP TABLE IF EXISTS {t}")
            con.execute(_DDL)
        if meta != want:
            con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(want.items()))
        self.progress.parts_known = con.execute("SELECT count(*) FROM parts").fetchone()[0]

    @property
    def con(self):
        cur = getattr(self._local, "con", None)
        if cur is None:
            cur = self._local.con = self._con.cursor()
        return cur

    # -- background refresh ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="readmodel-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # logged and retried; the model keeps serving what it has
                self.progress.last_error = str(exc)
                log.exception("read model refresh failed")
            self._stop.wait(self.refresh_s)

    def _listing(self) -> dict[str, tuple[int, int]]:
        """rel -> (mtime_ns, size) of every sessions part; folders whose mtime is unchanged are not re-listed."""
        base = self.root / "sessions"
        out: dict[str, tuple[int, int]] = {}
        seen = set()
        try:
            dirs = [d for d in os.scandir(base) if d.name.startswith("run_date=") and d.is_dir()]
        except FileNotFoundError:
            return out
        for d in dirs:
            path = Path(d.path)
            seen.add(path)
            mtime = d.stat().st_mtime_ns
            cached = self._dirs.get(path)
            if cached is None or cached[0] != mtime:
                files = {}
                for f in os.scandir(path):
                    if f.name.startswith("part-") and f.name.endswith(".parquet"):
                        try:
                            st = f.stat()
                        except FileNotFoundError:
                            continue
                        files[f"{d.name}/{f.name}"] = (st.st_mtime_ns, st.st_size)
                cached = self._dirs[path] = (mtime, files)
            out.update(cached[1])
        for gone in set(self._dirs) - seen:
            del self._dirs[gone]
        return out

    def refresh(self, max_batches: Optional[int] = None) -> int:
        """Ingest new/changed parts and drop vanished ones; returns the number of parts changed."""
        with self._write_lock:
            listing = self._listing()
            known = dict((r, (m, s)) for r, m, s in self.con.execute("SELECT rel, mtime_ns, size FROM parts").fetchall())
            gone = [r for r, st in known.items() if listing.get(r) != st]
            new = sorted((r for r, st in listing.items() if known.get(r) != st), reverse=True)  # newest day first
            self.progress.parts_pending = len(new)
            if gone:
                self._apply(drop=gone, add=[], listing=listing)
            batches = 0
            for i in range(0, len(new), self.batch_parts):
                if self._stop.is_set() or (max_batches is not None and batches >= max_batches):
                    break
                self._apply(drop=[], add=new[i:i + self.batch_parts], listing=listing)
                self._facets = None
                batches += 1
                self.progress.parts_pending = max(0, len(new) - i - self.batch_parts)
            self.progress.parts_known = len(listing) - self.progress.parts_pending
            self.progress.last_refresh = time.time()
            self.progress.last_error = None
            if gone or new:
                self._facets = None
            return len(gone) + len(new)

    def _apply(self, *, drop: list[str], add: list[str], listing: dict[str, tuple[int, int]]) -> None:
        t0 = time.perf_counter()
        con = self.con
        ok: list[str] = []
        if add:  # staged outside the transaction: an unreadable part must not abort it
            ok = self._stage("sessions", add)
            for table in DEPENDENT:
                self._stage(table, ok)
        con.execute("BEGIN")
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE aff (call_id VARCHAR)")
            if drop:
                con.execute("CREATE OR REPLACE TEMP TABLE gone (rel VARCHAR)")
                con.executemany("INSERT INTO gone VALUES (?)", [(r,) for r in drop])
                con.execute("INSERT INTO aff SELECT DISTINCT call_id FROM s_raw WHERE part IN (SELECT rel FROM gone)")
                for raw in _RAW.values():
                    con.execute(f"DELETE FROM {raw} WHERE part IN (SELECT rel FROM gone)")
                con.execute("DELETE FROM parts WHERE rel IN (SELECT rel FROM gone)")
            if ok:
                for table, raw in _RAW.items():
                    con.execute(f"INSERT INTO {raw} SELECT * FROM stage_{table}")
                con.execute("INSERT INTO aff SELECT DISTINCT call_id FROM stage_sessions")
            if add:  # unreadable ones too: not retried every few seconds (a rewrite changes mtime/size)
                con.executemany("INSERT OR REPLACE INTO parts VALUES (?, ?, ?)", [(r, *listing[r]) for r in add])
            con.execute("DELETE FROM cur WHERE call_id IN (SELECT call_id FROM aff)")
            con.execute(_CUR_FROM_AFF, {"tz": self.tz})
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        log.info("read model: +%d / -%d parts in %.2f s", len(add), len(drop), time.perf_counter() - t0)

    def _stage(self, table: str, rels: list[str]) -> list[str]:
        """Rows of ``table``'s parts named ``rels`` (those that exist and read) into temp table stage_<table>;
        the rels staged."""
        con = self.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE stage_{table} AS SELECT * FROM {_RAW[table]} LIMIT 0")
        base = self.root / table
        have = [r for r in rels if (base / r).is_file()]
        if not have:
            return []
        prefix_len = len(str(base)) + 2  # strip "<base>/" (1-based substr)
        sql = f"INSERT INTO stage_{table} " + _SELECT[table].format(
            part=f"substr(filename, {prefix_len})", src="read_parquet($files, union_by_name = true, filename = true)")
        try:
            con.execute(sql, {"files": [str(base / r) for r in have]})
            return have
        except Exception:  # one bad file fails the batch: read one by one so the readable ones are kept
            good = []
            for r in have:
                try:
                    con.execute(sql, {"files": [str(base / r)]})
                    good.append(r)
                except Exception as exc:
                    log.warning("ignoring unreadable part %s (%s)", base / r, str(exc).splitlines()[0])
            return good

    # -- workflow mirror (the review database is the truth) -------------------------------------------
    def set_states(self, rows: Iterable[tuple[str, str, str, Optional[str]]], replace_all: bool = False) -> None:
        """(call_id, run_id, state, user) rows from the review database; ``pending`` removes the row."""
        rows = list(rows)
        con = self.con
        con.execute("BEGIN")
        try:
            if replace_all:
                con.execute("DELETE FROM wf")
            else:
                con.executemany("DELETE FROM wf WHERE call_id = ?", [(r[0],) for r in rows])
            keep = [r for r in rows if r[2] != "pending"]
            if keep:
                con.executemany("INSERT INTO wf VALUES (?, ?, ?, ?)", keep)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # -- queries --------------------------------------------------------------------------------------
    def _where(self, q: ListQuery) -> tuple[list[str], list]:
        if q.text:  # the transcripts are scanned once per request (temp table of this thread's connection)
            self.con.execute("CREATE OR REPLACE TEMP TABLE text_hits AS SELECT DISTINCT call_id, run_id FROM u_txt "
                             "WHERE contains(text, ?)", [q.text])
        return where_clause(q)

    def page(self, q: ListQuery) -> Page:
        where, args = self._where(q)
        key = SORT_EXPR.get(q.sort, SORT_EXPR["score"])
        base_where = " AND ".join(where) or "true"
        con = self.con
        n = max(1, q.per_page)
        asc = not q.desc

        def order(forward: bool) -> str:
            d = "ASC" if forward == asc else "DESC"
            return f"{key} {d}, c.call_id {d}"

        def beyond(cursor: str, forward: bool) -> tuple[str, list]:
            value, cid = decode_cursor(cursor)
            op = ">" if forward == asc else "<"
            return f"({key} {op} ? OR ({key} = ? AND c.call_id {op} ?))", [value, value, cid]

        forward, offset, extra, extra_args = True, 0, [], []
        if q.before:
            forward = False
            cond, cargs = beyond(q.before, forward=False)
            extra, extra_args = [cond], cargs
        elif q.after:
            cond, cargs = beyond(q.after, forward=True)
            extra, extra_args = [cond], cargs
        elif q.last:
            forward = False
        elif q.page and q.page > 1:
            offset = (q.page - 1) * n
        sql_where = " AND ".join(where + extra) or "true"
        # late materialisation: sort only (key, id), then fetch the page's rows by id (wide list columns
        # carried through the top-N cost ~15x more)
        keys = con.execute(f"SELECT c.call_id, {key} FROM {FROM} WHERE {sql_where} ORDER BY {order(forward)} "
                           f"LIMIT {n} OFFSET {offset}", args + extra_args).fetchall()
        by_id = {r[0]: r for r in con.execute(f"SELECT {SELECT_VIEW} FROM {FROM} WHERE list_contains(?, c.call_id)",
                                              [[k[0] for k in keys]]).fetchall()} if keys else {}
        rows = [(*by_id[cid], k) for cid, k in keys if cid in by_id]
        if not forward:
            rows.reverse()
        if not rows and q.page and q.page > 1:  # past the end: the last page
            return self.page(dataclasses.replace(q, page=None, last=True))
        if not rows:
            total = con.execute(f"SELECT count(*) FROM {FROM} WHERE {base_where}", args).fetchone()[0]
            return Page(rows=(), total=total, page=1, n_pages=max(1, -(-total // n)), next=None, prev=None)
        first, last = (rows[0][-1], rows[0][0]), (rows[-1][-1], rows[-1][0])
        cond, cargs = beyond(encode_cursor(*first), forward=False)  # rows before this page: its number
        total, before_n = con.execute(f"SELECT count(*), count(*) FILTER (WHERE {cond}) FROM {FROM} "
                                      f"WHERE {base_where}", cargs + args).fetchone()
        n_pages = max(1, -(-total // n))
        has_next = before_n + len(rows) < total
        return Page(rows=tuple(view(r) for r in rows), total=total, n_pages=n_pages,
                    page=before_n // n + 1 if has_next else n_pages,
                    next=encode_cursor(*last) if has_next else None,
                    prev=encode_cursor(*first) if before_n > 0 else None)

    def get(self, call_id: str) -> Optional[SessionView]:
        row = self.con.execute(f"SELECT {SELECT_VIEW} FROM {FROM} WHERE c.call_id = ?", [call_id]).fetchone()
        return view(row) if row else None

    def session(self, call_id: str) -> Optional[SessionView]:
        """One call with its items and evidence (read from its item_results twin part)."""
        s = self.get(call_id)
        return None if s is None else self.with_items(s)

    def _twin(self, table: str, s: SessionView, columns: Optional[list[str]] = None):
        path = self.root / table / s.part
        if not s.part or not path.is_file():
            return None
        try:
            schema_names = pq.read_schema(path).names
            cols = [c for c in columns if c in schema_names] if columns else None
            t = pq.read_table(path, columns=cols, filters=[("call_id", "=", s.call_id)])
        except Exception as exc:  # unreadable: the page shows what it has
            log.warning("cannot read %s (%s)", path, exc)
            return None
        return t.filter(pc.equal(t.column("run_id"), s.run_id))

    def with_items(self, s: SessionView) -> SessionView:
        t = self._twin("item_results", s, ["call_id", "item_id", "item_name", "mode", "points", "max_points",
                                           "applicable", "vetoed", "evidence", "run_id"])
        items = []
        for r in (t.to_pylist() if t is not None else []):
            items.append(ItemView(item_id=r["item_id"], item_name=r.get("item_name") or r["item_id"],
                                  mode=r.get("mode") or "", points=r["points"], max_points=r["max_points"],
                                  applicable=r["applicable"], vetoed=bool(r.get("vetoed")),
                                  evidence=tuple(r.get("evidence") or ())))
        return dataclasses.replace(s, items=tuple(items))

    def utterances(self, s: SessionView) -> list[dict]:
        t = self._twin("utterances", s, ["call_id", "turn_index", "role", "channel", "start", "end", "text",
                                         "emotion_index", "low_confidence", "run_id"])
        if t is None:
            return []
        rows = sorted(t.to_pylist(), key=lambda u: u["turn_index"])
        for r in rows:
            r.setdefault("low_confidence", None)
        return rows

    def sessions(self, q: ListQuery, with_items: bool = False, limit: int = 100_000) -> list[SessionView]:
        """Every matching call (export, reports): worst first."""
        where, args = self._where(q)
        rows = self.con.execute(f"SELECT {SELECT_VIEW} FROM {FROM} WHERE {' AND '.join(where) or 'true'} "
                                f"ORDER BY {SORT_EXPR['score']}, c.call_id LIMIT {int(limit)}", args).fetchall()
        views = [view(r) for r in rows]
        return [self.with_items(v) for v in views] if with_items else views

    def current_runs(self, call_ids: Iterable[str]) -> dict[str, str]:
        ids = list(set(call_ids))
        if not ids:
            return {}
        return dict(self.con.execute("SELECT call_id, run_id FROM cur WHERE list_contains(?, call_id)",
                                     [ids]).fetchall())

    def count(self) -> int:
        return self.con.execute("SELECT count(*) FROM cur").fetchone()[0]

    def facets(self) -> dict:
        """Choices of the list filters (teams, agents, item names, flags), cached until the data change."""
        f = self._facets
        if f is None:
            con = self.con
            f = {"team": [r[0] for r in con.execute("SELECT DISTINCT team FROM cur WHERE team IS NOT NULL "
                                                    "ORDER BY 1").fetchall()],
                 "agent_id": [r[0] for r in con.execute("SELECT DISTINCT agent_id FROM cur WHERE agent_id IS NOT "
                                                        "NULL ORDER BY 1").fetchall()],
                 "items": dict(con.execute("SELECT item_id, any_value(item_name) FROM it_raw GROUP BY 1 ORDER BY 1")
                               .fetchall()),
                 "flags": [r[0] for r in con.execute("SELECT DISTINCT unnest(reasons) FROM cur ORDER BY 1").fetchall()]}
            for col in ("call_type", "call_reason"):
                f[col] = [r[0] for r in con.execute(f"SELECT DISTINCT {col} FROM cur WHERE {col} IS NOT NULL "
                                                    "ORDER BY 1").fetchall()]
            self._facets = f
        return f

    def distinct(self, column: str) -> list[str]:
        return self.facets()[column]

    def item_names(self) -> dict[str, str]:
        return self.facets()["items"]

    def flags(self) -> list[str]:
        return self.facets()["flags"]

    # -- reports --------------------------------------------------------------------------------------
    def weekly(self, level: str, q: ListQuery) -> tuple[list[tuple], list[tuple]]:
        """(group, ISO week, n, mean total, n not passed) and (item_id, name, week, n applicable, n passed)."""
        group = {"center": "'center'", "team": f"coalesce(c.team, '{NO_TEAM}')",
                 "agent": f"coalesce(c.agent_id, '{NO_AGENT}')"}[level]
        where, args = self._where(q)
        where = where + ["c.total IS NOT NULL", "c.day IS NOT NULL"]
        w = " AND ".join(where)
        series = self.con.execute(
            f"SELECT {group} AS g, strftime(c.day, '%G-W%V') AS wk, count(*), avg(c.total), "
            f"count(*) FILTER (WHERE NOT c.passed) FROM {FROM} WHERE {w} GROUP BY ALL ORDER BY 1, 2", args).fetchall()
        items = self.con.execute(
            f"SELECT i.item_id, any_value(i.item_name), strftime(c.day, '%G-W%V') AS wk, count(*), "
            f"count(*) FILTER (WHERE NOT i.failed) FROM {FROM} JOIN it_raw i ON i.call_id = c.call_id "
            f"AND i.run_id = c.run_id AND i.part = c.part WHERE {w} AND i.applicable GROUP BY i.item_id, wk "
            f"ORDER BY 1, 3", args).fetchall()
        return series, items

    def call_reasons(self, q: ListQuery) -> tuple[dict[str, list[tuple]], int]:
        """The reasons report's rows per dimension (:func:`queries.reason_cube_sql`) and the number of matching
        calls without a summary."""
        where, args = self._where(q)
        cubes = {dim: self.con.execute(reason_cube_sql(dim, where), args).fetchall() for dim in REASON_DIMS}
        return cubes, self.con.execute(unsummarized_sql(where), args).fetchone()[0]

    def close(self) -> None:
        self.stop()
        self._con.close()
