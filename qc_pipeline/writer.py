"""Resumable, atomic Parquet writer.

Layout (hive-partitioned by run date)::

    OUT/sessions/run_date=2026-11-23/part-<run_id>-00000.parquet
    OUT/utterances/run_date=2026-11-23/part-<run_id>-00000.parquet

A flush writes the utterances part first and the sessions part last, each to a temp
file renamed into place.  A sessions part is the commit marker: on open, utterance
parts without their sessions twin (left by a crash) and temp files are removed, and
every ``call_id`` in a sessions part counts as done — so a re-run skips finished calls,
loses nothing and duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import uuid
from pathlib import Path
from typing import Iterable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from qc_pipeline import __version__
from qc_pipeline.errors import SetupError
from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, CallRecord, low_confidence_share
from qc_pipeline.schema import SESSIONS, TABLES
from qc_pipeline.text_safety import utf8_safe

log = logging.getLogger(__name__)


# Written before the sessions part of the same name; removed on start when that part is missing.
DEPENDENT_TABLES = tuple(t for t in TABLES if t != "sessions")  # written before the sessions commit marker


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


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _parts(root: Path, table: str) -> list[Path]:
    return sorted((root / table).glob("run_date=*/part-*.parquet"))


def completed_call_ids(out_dir: str | os.PathLike) -> set[str]:
    """Call ids that already have a committed sessions row under ``out_dir``."""
    done: set[str] = set()
    for part in _parts(Path(out_dir), "sessions"):
        try:
            done.update(pq.read_table(part, columns=["call_id"]).column("call_id").to_pylist())
        except Exception as exc:  # an unreadable part is skipped, never fatal
            log.warning("ignoring unreadable part %s (%s); its calls will be redone", part, exc)
    return done


def read_table(out_dir: str | os.PathLike, table: str) -> pa.Table:
    """Read all committed parts of a table (convenience for scripts and tests)."""
    schema = TABLES[table]
    parts = _parts(Path(out_dir), table)
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=schema) for p in parts])


def session_row(rec: CallRecord, *, run_id: str, asr_model: str, asr_sha: str, config_hash: str) -> dict:
    src, info = rec.source, rec.audio_info
    speech = {ROLE_AGENT: 0.0, ROLE_CUSTOMER: 0.0}
    for u in rec.utterances:
        if u.role in speech and u.start is not None and u.end is not None:
            speech[u.role] += u.end - u.start
    is_audio = src.kind == "audio"
    return {
        "call_id": src.call_id, "kind": src.kind, "source_path": src.path, "agent_id": src.agent_id,
        "team": src.team, "queue": src.queue, "started_at": src.started_at,
        "status": rec.status, "error_reason": rec.error_reason, "error_detail": rec.error_detail,
        "duration_s": info.duration_s if info else None,
        "sample_rate": info.sample_rate if info else None,
        "channels": info.channels if info else None,
        "codec": info.codec if info else None,
        "channel_layout": src.channel_layout if is_audio else None,
        "agent_channel": rec.agent_channel,
        "n_speakers": len({u.speaker for u in rec.utterances}) if is_audio else None,
        "role_confidence": rec.role_confidence,
        "n_utterances": len(rec.utterances),
        "agent_speech_s": round(speech[ROLE_AGENT], 3) if is_audio else None,
        "customer_speech_s": round(speech[ROLE_CUSTOMER], 3) if is_audio else None,
        "flags": list(rec.flags),
        "drops": [{"key": k, "value": v} for k, v in rec.drops],
        "stage_seconds": [{"key": k, "value": v} for k, v in rec.timings],
        "asr_model": asr_model if is_audio else None,
        "asr_model_sha256": asr_sha if is_audio else None,
        "asr_low_confidence_share": low_confidence_share(rec.utterances) if is_audio else None,
        "pipeline_version": __version__, "config_hash": config_hash, "run_id": run_id,
        "processed_at": dt.datetime.now(dt.timezone.utc),
    }


def utterance_rows(rec: CallRecord, *, run_id: str) -> Iterable[dict]:
    for u in rec.utterances:
        yield {
            "call_id": rec.call_id, "turn_index": u.turn_index, "role": u.role, "speaker": u.speaker,
            "channel": u.channel, "start": u.start, "end": u.end, "text": u.text,
            "avg_logprob": u.avg_logprob, "no_speech_prob": u.no_speech_prob,
            "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability} for w in u.words],
            "low_confidence": u.low_confidence,
            "emotion_index": u.emotion_index, "emotion": u.emotion,
            "run_id": run_id,
        }


def score_rows(rec: CallRecord, *, run_id: str) -> tuple[list[dict], list[dict]]:
    """(scores rows, item_results rows) for a scored record; empty when it was not scored."""
    s = rec.score
    if s is None:
        return [], []
    score = [{
        "call_id": rec.call_id, "scorecard_id": s.scorecard_id, "scorecard_version": s.scorecard_version,
        "total": s.total, "grade": s.grade, "passed": s.passed, "veto": s.veto, "veto_items": list(s.veto_items),
        "flags": list(s.flags), "customer_emotion_index": rec.customer_emotion_index,
        "agent_attitude_index": rec.agent_attitude_index, "escalation": list(rec.escalation), "run_id": run_id,
    }]
    items = [{
        "call_id": rec.call_id, "scorecard_id": s.scorecard_id, "item_id": r.item_id, "item_name": r.name,
        "role": r.role, "mode": r.mode, "points": r.points, "max_points": r.max_points, "applicable": r.applicable,
        "hit": r.hit, "level": r.level, "violations": r.violations, "vetoed": r.vetoed,
        "evidence": [{"rule_id": h.rule_id, "rule_version": s.scorecard_version, "turn_index": h.turn_index,
                      "role": h.role, "start": h.start, "end": h.end, "text": h.text} for h in r.evidence],
        "run_id": run_id,
    } for r in s.items]
    return score, items


def _fsync_dir(folder: Path) -> None:
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


class ResultWriter:
    def __init__(self, out_dir: str | os.PathLike, *, run_id: str, config_hash: str, asr_model: str = "",
                 asr_sha: str = "", flush_every: int = 8, compression: str = "zstd",
                 run_date: Optional[dt.date] = None) -> None:
        self.root = Path(out_dir)
        self.run_id = run_id
        self.meta = {"run_id": run_id, "asr_model": asr_model, "asr_sha": asr_sha, "config_hash": config_hash}
        self.flush_every = flush_every
        self.compression = None if compression == "none" else compression
        self.partition = f"run_date={(run_date or dt.date.today()).isoformat()}"
        self._rows: dict[str, list[dict]] = {name: [] for name in TABLES}
        self._seq = 0
        self._failed = False
        self.written_calls = 0
        self._prepare()

    def _prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise SetupError(f"output folder {self.root} is not writable: {write_failure_hint(exc)}") from None
        for tmp in self.root.glob("*/run_date=*/*.tmp"):
            tmp.unlink(missing_ok=True)
        committed = {p.relative_to(self.root / "sessions") for p in _parts(self.root, "sessions")}
        for table in DEPENDENT_TABLES:
            for part in _parts(self.root, table):
                if part.relative_to(self.root / table) not in committed:
                    log.warning("removing uncommitted part %s left by an interrupted run", part)
                    part.unlink()

    def add(self, rec: CallRecord) -> None:
        self._rows["sessions"].append(utf8_safe(session_row(rec, **self.meta)))
        self._rows["utterances"].extend(utf8_safe(list(utterance_rows(rec, run_id=self.run_id))))
        scores, items = score_rows(rec, run_id=self.run_id)
        self._rows["scores"].extend(utf8_safe(scores))
        self._rows["item_results"].extend(utf8_safe(items))
        if len(self._rows["sessions"]) >= self.flush_every:
            self.flush()

    def _write(self, table: str, schema: pa.Schema, rows: list[dict], name: str) -> None:
        folder = self.root / table / self.partition
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (name + ".tmp")
        try:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp, compression=self.compression)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)

    def _discard(self, name: str) -> None:
        """Best effort after a failed flush: remove this flush's dependent parts (no sessions twin)."""
        for table in DEPENDENT_TABLES:
            try:
                (self.root / table / self.partition / name).unlink(missing_ok=True)
            except OSError:
                pass  # removed on the next start anyway

    def flush(self) -> None:
        n_calls = len(self._rows["sessions"])
        if not n_calls or self._failed:
            return
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        try:
            for table in DEPENDENT_TABLES:  # sessions last: it is the commit marker
                self._write(table, TABLES[table], self._rows[table], name)
            self._write("sessions", SESSIONS, self._rows["sessions"], name)
        except Exception as exc:
            self._failed = True  # close() must not try again and fail a second time
            self._discard(name)
            if not isinstance(exc, OSError):
                raise
            raise SetupError(f"cannot write results to {self.root}: {write_failure_hint(exc)}. Calls written "
                             "so far are safe; re-run the same command to resume") from None
        self.written_calls += n_calls
        self._seq += 1
        self._rows = {name: [] for name in TABLES}

    def close(self) -> None:
        self.flush()
