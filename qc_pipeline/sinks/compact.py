"""``qc-pipeline compact DIR [--date D]``: rewrite a day's parts into a few large files, atomically.

Small parts (one per flush) make a night of calls thousands of files.  Compaction rewrites the
committed parts of a ``run_date`` partition into one file per table per ``calls_per_file`` calls,
keeping the commit-marker rule (a dependent part counts only with its sessions twin) at every moment:

1. the new dependent parts are written next to the old ones under a new name -- uncommitted, so no
   reader counts them -- and the new sessions parts are staged under ``DIR/_compact/<date>/``;
2. a journal ``DIR/_compact/<date>.json`` names the old parts and the new ones;
3. roll forward: the old sessions parts (commit markers) are removed, the staged sessions parts moved
   into place, then the old dependent parts removed, then the journal.

A crash before the journal leaves only uncommitted files (removed on the next open); after it, the
next ``open`` (a run or another compaction) rolls forward.  Readers never see a call twice; for an
instant during step 3 they may see the day without its compacted calls.  Both runs and compaction
hold the output-folder lock, so they never overlap.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

from qc_pipeline.schema import TABLES
from qc_pipeline.sinks.parquet import (
    DEPENDENT_TABLES,
    atomic_file,
    check_version,
    fsync_dir,
    new_run_id,
    parts,
    remove_uncommitted,
)

log = logging.getLogger(__name__)

JOURNAL_DIR = "_compact"
ROW_GROUP_ROWS = 65_536


@dataclass
class CompactStats:
    files_before: dict[str, int] = field(default_factory=dict)   # run_date -> parquet files over all tables
    files_after: dict[str, int] = field(default_factory=dict)


def _dates(root: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in (root / "sessions").glob("run_date=*") if p.is_dir())


def _files(root: Path, day: str) -> int:
    return sum(len(parts(root, t, day)) for t in TABLES)


def _write_concat(sources: list[Path], schema: pa.Schema, dest: Path, compression: Optional[str]) -> None:
    """``sources`` (parts of one table) into one file, streamed in row groups; temp file renamed into place."""
    with atomic_file(dest) as tmp, pq.ParquetWriter(tmp, schema, compression=compression) as writer:
        buf: list[pa.Table] = []
        for src in sources:
            buf.append(pq.read_table(src, schema=schema))
            if sum(t.num_rows for t in buf) >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(buf))
                buf = []
        if buf or not sources:
            writer.write_table(pa.concat_tables(buf) if buf else schema.empty_table())


def _chunks(sessions: list[Path], calls_per_file: int) -> list[list[Path]]:
    chunks: list[list[Path]] = [[]]
    count = 0
    for part in sessions:
        n = pq.ParquetFile(part).metadata.num_rows
        if chunks[-1] and count + n > calls_per_file:
            chunks.append([])
            count = 0
        chunks[-1].append(part)
        count += n
    return chunks


def _roll_forward(root: Path, journal: Path) -> None:
    plan = json.loads(journal.read_text("utf-8"))
    date, old, new = plan["date"], plan["old"], plan["new"]
    partition = f"run_date={date}"
    staged = root / JOURNAL_DIR / date
    for name in old:  # commit markers first: the old dependent parts stop counting at once
        (root / "sessions" / partition / name).unlink(missing_ok=True)
    for name in new:
        if (staged / name).exists():
            os.replace(staged / name, root / "sessions" / partition / name)
    fsync_dir(root / "sessions" / partition)
    for table in DEPENDENT_TABLES:
        for name in old:
            (root / table / partition / name).unlink(missing_ok=True)
    shutil.rmtree(staged, ignore_errors=True)
    journal.unlink()
    fsync_dir(root / JOURNAL_DIR)


def recover(root: Path) -> None:
    """Finish a compaction that wrote its journal; drop the staging of one that did not."""
    folder = root / JOURNAL_DIR
    if not folder.is_dir():
        return
    for journal in sorted(folder.glob("*.json")):
        log.warning("finishing an interrupted compaction of %s", journal.stem)
        _roll_forward(root, journal)
    for staged in folder.iterdir():
        if staged.is_dir():  # its journal was never written: nothing was committed
            shutil.rmtree(staged, ignore_errors=True)
    for tmp in folder.glob("*.tmp"):
        tmp.unlink(missing_ok=True)


def compact(out_dir: str | os.PathLike, date: Optional[str] = None, *, calls_per_file: int = 100_000,
            compression: Optional[str] = "zstd") -> CompactStats:
    """Compact ``date`` (YYYY-MM-DD), or every date.  The caller holds the output-folder lock."""
    root = Path(out_dir)
    recover(root)
    remove_uncommitted(root)
    stats = CompactStats()
    for day in ([date] if date else _dates(root)):
        sessions = parts(root, "sessions", day)
        stats.files_before[day] = _files(root, day)
        if len(sessions) <= 1:
            stats.files_after[day] = stats.files_before[day]
            continue
        for part in sessions:
            check_version(pq.read_schema(part), part)
        partition, staged = f"run_date={day}", root / JOURNAL_DIR / day
        staged.mkdir(parents=True, exist_ok=True)
        stamp, new = new_run_id(), []
        for i, chunk in enumerate(_chunks(sessions, calls_per_file)):
            name = f"part-compact-{stamp}-{i:05d}.parquet"
            for table in DEPENDENT_TABLES:
                srcs = [root / table / partition / p.name for p in chunk]
                _write_concat([s for s in srcs if s.exists()], TABLES[table], root / table / partition / name,
                              compression)
            _write_concat(chunk, TABLES["sessions"], staged / name, compression)
            new.append(name)
        journal = root / JOURNAL_DIR / f"{day}.json"
        with atomic_file(journal) as tmp:
            tmp.write_text(json.dumps({"date": day, "old": [p.name for p in sessions], "new": new}), "utf-8")
        _roll_forward(root, journal)
        stats.files_after[day] = _files(root, day)
        log.info("compacted %s: %d files -> %d", day, stats.files_before[day], stats.files_after[day])
    return stats
