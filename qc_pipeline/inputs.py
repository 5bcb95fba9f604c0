"""Turn command-line inputs into :class:`CallSource` records.

Accepted inputs (any mix):

* a folder — audio files found recursively (call_id = relative path without extension)
  and ``*.jsonl`` chat-session files;
* a manifest ``.csv`` or ``.jsonl`` with columns ``call_id, path, agent_id, team, queue,
  started_at, channel_layout, caller_verified`` (paths relative to the manifest's folder);
* a chat ``.jsonl`` with one session per line: ``{dialogue_id, turns: [{role, text}, ...]}``
  (the schema of the shared dialogue corpora);
* a single audio file.

A bad manifest row or chat line becomes a source carrying ``input_error``, so it ends up
as an error row in ``sessions`` instead of stopping the batch.  An input that yields no rows at all
(a manifest that cannot be read, a manifest inside a folder, a file outside the folder it was found
in) is listed in :class:`Discovery` ``skipped`` with its reason, and calls whose id came twice are
listed in ``duplicates``: every input ends up in a row or in the run summary.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from qc_pipeline.errors import Reason, SetupError
from qc_pipeline.records import KIND_AUDIO, KIND_CHAT, ROLE_AGENT, ROLE_CUSTOMER, CallSource, ChatTurn
from qc_pipeline.text_safety import utf8_text as _utf8_text

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".flac", ".amr", ".ogg", ".opus", ".aac", ".wma",
                              ".mp4", ".3gp", ".webm", ".au", ".aiff", ".aif", ".caf", ".gsm", ".v3", ".vox"})
MANIFEST_FIELDS = ("call_id", "path", "agent_id", "team", "queue", "started_at", "channel_layout", "caller_verified")
LAYOUT_ALIASES = {
    "": "auto", "auto": "auto", "mono": "mono", "stereo": "auto",
    "agent_left": "agent_left", "left": "agent_left", "agent_l": "agent_left", "stereo_agent_left": "agent_left",
    "agent_right": "agent_right", "right": "agent_right", "agent_r": "agent_right", "stereo_agent_right": "agent_right",
}
ROLE_ALIASES = {
    "agent": ROLE_AGENT, "staff": ROLE_AGENT, "service": ROLE_AGENT, "客服": ROLE_AGENT, "坐席": ROLE_AGENT,
    "customer": ROLE_CUSTOMER, "user": ROLE_CUSTOMER, "client": ROLE_CUSTOMER, "客户": ROLE_CUSTOMER,
    "用户": ROLE_CUSTOMER, "顾客": ROLE_CUSTOMER,
}
MAX_LINE_BYTES = 16 * 1024 * 1024   # one JSONL line (manifest row or chat session)
MAX_CHAT_TURNS = 10_000             # turns in one chat session
MAX_CALL_ID_CHARS = 512
MAX_CSV_BYTES = 256 * 1024 * 1024
MAX_PATH_CHARS = 4096
_READ_CHUNK = 1024 * 1024
_BLANK = object()  # marks an empty JSONL line


def _clean(value) -> Optional[str]:
    """A scalar as stripped text; None for missing, empty, or non-scalar (object/list) values."""
    if value is None or isinstance(value, (dict, list, tuple, bool)):
        return None
    value = str(value).strip()
    return value or None


def _call_id(value) -> Optional[str]:
    """A usable call_id or None (missing, non-scalar, too long, or containing NUL/control characters)."""
    value = _clean(value)
    if value is None or len(value) > MAX_CALL_ID_CHARS or any(ord(c) < 32 for c in value):
        return None
    return value


@dataclass(frozen=True)
class SkippedInput:
    """An input that gives no rows, with the reason code and what to do about it."""

    input: str
    reason: str
    detail: str


@dataclass
class Discovery:
    sources: list[CallSource] = field(default_factory=list)
    duplicates: list[CallSource] = field(default_factory=list)   # ids seen before: skipped (first wins)
    skipped: list[SkippedInput] = field(default_factory=list)


class UnreadableInput(Exception):
    """A whole input cannot be read; it is listed in the run summary instead of stopping the batch."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _default_tz() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    from qc_pipeline.config import RunConfig

    return ZoneInfo(RunConfig().input_timezone)


_LOOSE_TIME = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,6}))?)?)?"
                         r"\s*(Z|[+-]\d{2}:?\d{2})?")


def parse_started_at(value, tz: Optional[dt.tzinfo] = None) -> tuple[Optional[dt.datetime], Optional[str]]:
    """``(aware datetime or None, problem or None)`` from an ISO 8601 time; a time without an offset is
    taken to be in ``tz`` (``run.input_timezone``).  Spreadsheet spellings (``2026/11/20 9:15``) are
    accepted too."""
    text = _clean(value)
    if text is None:
        return None, None
    m = _LOOSE_TIME.fullmatch(text)
    try:
        if m is None:
            raise ValueError
        year, month, day, hour, minute, second, frac, offset = m.groups()
        when = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                           int((frac or "0").ljust(6, "0")))
        if offset:
            when = dt.datetime.fromisoformat(when.isoformat() + ("+00:00" if offset == "Z" else offset))
    except ValueError:
        return None, (f"started_at {text[:60]!r} is not an ISO 8601 time (e.g. 2026-11-20T09:15:00+08:00 or "
                      "2026-11-20 09:15:00)")
    return (when if when.tzinfo else when.replace(tzinfo=tz or _default_tz())), None


_TRUE = frozenset(("true", "1", "yes", "y", "是"))
_FALSE = frozenset(("false", "0", "no", "n", "否"))


def parse_flag(value, name: str) -> tuple[Optional[bool], Optional[str]]:
    """``(True/False/None, problem)`` for an optional yes/no column such as ``caller_verified``
    (true/false, 1/0, yes/no, 是/否; empty = unknown)."""
    if isinstance(value, bool):
        return value, None
    text = _clean(value if not isinstance(value, int) else str(value))
    if text is None:
        return None, None
    low = text.lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE, None
    return None, f"{name} {text[:40]!r} must be true or false (or empty = unknown)"


def _bad(call_id: str, reason: str, detail: str, kind: str = KIND_AUDIO, path: Optional[str] = None) -> CallSource:
    return CallSource(call_id=call_id, kind=kind, path=path, input_error=(reason, detail))


def _resolve_path(raw: str, base: Path) -> tuple[Optional[str], Optional[str]]:
    """Manifest path → absolute path string inside the manifest's folder, or (None, why).

    Absolute paths are accepted only when they point inside the folder; ``..`` and symlinks
    are resolved first, so neither can lead outside it."""
    if "\x00" in raw:
        return None, "path contains a NUL byte"
    if len(raw) > MAX_PATH_CHARS:
        return None, f"path is longer than {MAX_PATH_CHARS} characters"
    try:
        root = base.resolve()
        resolved = (root / raw).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # ELOOP, ENAMETOOLONG, ...
        return None, f"path {raw[:200]!r} cannot be resolved ({exc.__class__.__name__})"
    if resolved == root or not resolved.is_relative_to(root):
        return None, f"path {raw[:200]!r} does not name a file inside the manifest's folder {root}"
    return str(resolved), None


def _id_from_path(raw: str, base: Path) -> str:
    """Default call_id for a manifest row: its path relative to the manifest's folder (symlinks
    not followed), without the extension."""
    root = os.path.abspath(base)
    rel = os.path.relpath(os.path.normpath(os.path.join(root, raw)), root)
    if rel.startswith(".."):  # an absolute path that reached the folder through a symlink
        rel = os.path.basename(raw)
    rel = rel.replace(os.sep, "/")
    stem, dot, ext = rel.rpartition(".")
    return stem if dot and stem and not stem.endswith("/") and "/" not in ext else rel


def manifest_row_to_source(row: dict, base: Path, fallback_id: str, tz: Optional[dt.tzinfo] = None) -> CallSource:
    if not isinstance(row, dict):
        return _bad(fallback_id, Reason.BAD_MANIFEST_ROW, f"row is {type(row).__name__}, expected an object")
    call_id = _call_id(row.get("call_id"))
    if call_id is None and _clean(row.get("call_id")) is not None:
        return _bad(fallback_id, Reason.BAD_MANIFEST_ROW,
                    f"call_id must be text without control characters, at most {MAX_CALL_ID_CHARS} characters")
    raw_path = _clean(row.get("path"))
    if raw_path is None:
        return _bad(call_id or fallback_id, Reason.BAD_MANIFEST_ROW, "row has no 'path'")
    path, why = _resolve_path(raw_path, base)
    if path is None:
        return _bad(call_id or fallback_id, Reason.PATH_OUTSIDE_ROOT, why)
    if call_id is None:
        call_id = _call_id(_id_from_path(raw_path, base)) or fallback_id
    layout_raw = (_clean(row.get("channel_layout")) or "").lower()
    if layout_raw not in LAYOUT_ALIASES:
        return _bad(call_id, Reason.BAD_MANIFEST_ROW,
                    f"channel_layout {layout_raw!r} is not one of auto, mono, agent_left, agent_right", path=path)
    started_at, problem = parse_started_at(row.get("started_at"), tz)
    verified, problem2 = parse_flag(row.get("caller_verified"), "caller_verified")
    if problem or problem2:
        return _bad(call_id, Reason.BAD_MANIFEST_ROW, problem or problem2, path=path)
    return CallSource(call_id=call_id, kind=KIND_AUDIO, path=path, agent_id=_clean(row.get("agent_id")),
                      team=_clean(row.get("team")), queue=_clean(row.get("queue")),
                      started_at=started_at, channel_layout=LAYOUT_ALIASES[layout_raw], caller_verified=verified)


def _seconds(value) -> Optional[float]:
    """A finite time in seconds, or None (missing, non-numeric, NaN/inf, out of float range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def chat_to_source(obj, fallback_id: str, tz: Optional[dt.tzinfo] = None) -> CallSource:
    if not isinstance(obj, dict):
        return _bad(fallback_id, Reason.BAD_CHAT_SESSION, "line is not a JSON object", kind=KIND_CHAT)
    call_id = _call_id(obj.get("call_id") or obj.get("session_id") or obj.get("dialogue_id")) or fallback_id
    turns_raw = obj.get("turns")
    if not isinstance(turns_raw, list) or not turns_raw:
        return _bad(call_id, Reason.BAD_CHAT_SESSION, "'turns' must be a non-empty list", kind=KIND_CHAT)
    if len(turns_raw) > MAX_CHAT_TURNS:
        return _bad(call_id, Reason.INPUT_TOO_LARGE,
                    f"{len(turns_raw)} turns; a chat session may have at most {MAX_CHAT_TURNS}", kind=KIND_CHAT)
    turns = []
    for i, t in enumerate(turns_raw):
        if not isinstance(t, dict):
            return _bad(call_id, Reason.BAD_CHAT_SESSION, f"turn {i} is not an object", kind=KIND_CHAT)
        role = ROLE_ALIASES.get(_clean(t.get("role")).lower() if _clean(t.get("role")) else "")
        if role is None:
            return _bad(call_id, Reason.BAD_CHAT_SESSION,
                        f"turn {i} has role {str(t.get('role'))[:100]!r}; expected agent or customer",
                        kind=KIND_CHAT)
        text = t.get("text")
        if not isinstance(text, str):
            return _bad(call_id, Reason.BAD_CHAT_SESSION, f"turn {i} has no text string", kind=KIND_CHAT)
        turns.append(ChatTurn(role=role, text=_utf8_text(text), start=_seconds(t.get("start")), end=_seconds(t.get("end"))))
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    started_at, problem = parse_started_at(obj.get("started_at") or meta.get("started_at"), tz)
    verified, problem2 = parse_flag(obj.get("caller_verified", meta.get("caller_verified")), "caller_verified")
    if problem or problem2:
        return _bad(call_id, Reason.BAD_CHAT_SESSION, problem or problem2, kind=KIND_CHAT)
    return CallSource(call_id=call_id, kind=KIND_CHAT, path=None,
                      agent_id=_clean(obj.get("agent_id") or meta.get("agent_id")),
                      team=_clean(obj.get("team") or meta.get("team")),
                      queue=_clean(obj.get("queue") or meta.get("queue")),
                      started_at=started_at, chat_turns=tuple(turns), caller_verified=verified)


def _iter_lines(fh) -> Iterator[tuple[int, Optional[bytes]]]:
    """``(line_number, bytes)``; ``bytes`` is None for a line over MAX_LINE_BYTES, which is
    skipped in chunks, so memory stays bounded even for a file without newlines."""
    n = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        n += 1
        if len(raw) <= MAX_LINE_BYTES:
            yield n, raw
            continue
        while raw and not raw.endswith(b"\n"):
            raw = fh.readline(_READ_CHUNK)
        yield n, None


def _parse_line(raw: Optional[bytes]) -> tuple[object, Optional[str], Optional[str]]:
    """``(object, reason, why)``; object is None with a reason when the line cannot be used."""
    if raw is None:
        return None, Reason.INPUT_TOO_LARGE, f"line longer than {MAX_LINE_BYTES} bytes"
    try:
        line = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        return None, None, f"line is not UTF-8 (bad byte at offset {exc.start}); save the file as UTF-8"
    if not line:
        return _BLANK, None, None
    try:
        return json.loads(line), None, None
    except json.JSONDecodeError as exc:
        return None, None, f"invalid JSON: {exc.msg} at column {exc.colno}"
    except (ValueError, RecursionError) as exc:  # e.g. integers over the digit limit, absurd nesting
        return None, None, f"invalid JSON: {exc.__class__.__name__}: {str(exc)[:200]}"


def _iter_jsonl(path: Path) -> Iterator[tuple[int, object, Optional[tuple[Optional[str], str]]]]:
    """``(line_number, object, error)``; ``error`` is ``(reason or None, why)``.  Blank lines are skipped."""
    with open(path, "rb") as fh:
        for n, raw in _iter_lines(fh):
            obj, reason, why = _parse_line(raw)
            if why is not None:
                yield n, None, (reason, why)
            elif obj is not _BLANK:
                yield n, obj, None


def _jsonl_kind(path: Path) -> Optional[str]:
    """'chat' when the first line that says has 'turns', 'manifest' when it has 'path'; None when no
    line says (a malformed first line does not decide it)."""
    for _n, obj, err in _iter_jsonl(path):
        if err is None and isinstance(obj, dict):
            if "turns" in obj:
                return "chat"
            if "path" in obj:
                return "manifest"
    return None


def read_jsonl(path: Path, kind: Optional[str] = None, tz: Optional[dt.tzinfo] = None) -> Iterator[CallSource]:
    kind = kind or _jsonl_kind(path) or "manifest"
    base = path.parent
    for n, obj, err in _iter_jsonl(path):
        fallback = f"{path.stem}:{n}"
        if kind == "chat":
            yield (_bad(fallback, err[0] or Reason.BAD_CHAT_SESSION, err[1], kind=KIND_CHAT) if err
                   else chat_to_source(obj, fallback, tz))
        else:
            yield (_bad(fallback, err[0] or Reason.BAD_MANIFEST_ROW, err[1]) if err
                   else manifest_row_to_source(obj, base, fallback, tz))


def _csv_text(path: Path) -> str:
    """The whole manifest as text; a file that is too big or not UTF-8 (e.g. GBK from Excel) is unreadable."""
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise UnreadableInput(Reason.BAD_MANIFEST, f"CSV manifest is {size} bytes (limit {MAX_CSV_BYTES}); split "
                                                   "it into several manifests")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableInput(Reason.BAD_MANIFEST, f"not UTF-8 text (bad byte at offset {exc.start}); save the "
                                                   "manifest as UTF-8 (Excel: 'CSV UTF-8') and re-run") from None


def read_csv(path: Path, tz: Optional[dt.tzinfo] = None) -> Iterator[CallSource]:
    """Rows of a CSV manifest; :class:`UnreadableInput` (before any row) when the file cannot be used."""
    text = _csv_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise UnreadableInput(Reason.BAD_MANIFEST, f"cannot read the CSV header ({exc})") from None
    if not fieldnames or "path" not in [(f or "").strip() for f in fieldnames]:
        raise UnreadableInput(Reason.BAD_MANIFEST, "a CSV manifest needs a header row with at least a 'path' "
                                                   f"column (known columns: {', '.join(MANIFEST_FIELDS)})")
    return _csv_rows(path, reader, tz)


def _csv_rows(path: Path, reader: csv.DictReader, tz: Optional[dt.tzinfo]) -> Iterator[CallSource]:
    while True:
        fallback = f"{path.stem}:{reader.line_num + 1}"
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _bad(fallback, Reason.BAD_MANIFEST_ROW, f"unreadable CSV row: {exc}")
            continue
        clean = {(k or "").strip(): v for k, v in row.items() if isinstance(k, str)}
        yield manifest_row_to_source(clean, path.parent, fallback, tz)


def _folder_ids(folder: Path, files: list[Path]) -> dict[Path, str]:
    """call_id per audio file: the path relative to ``folder`` without extension, or with it for files
    that would share that id (``call.amr`` and ``call.opus`` side by side)."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in files:
        by_stem[p.relative_to(folder).with_suffix("").as_posix()].append(p)
    return {p: (stem if len(same) == 1 else p.relative_to(folder).as_posix())
            for stem, same in by_stem.items() for p in same}


def scan_folder(folder: Path, skipped: list[SkippedInput], tz: Optional[dt.tzinfo] = None) -> Iterator[CallSource]:
    """Audio and chat files under ``folder``.  Like manifest paths, a file must resolve inside the folder:
    a symlink leading out of it becomes a ``path_outside_root`` row (audio) or a skipped input (chat)."""
    root = folder.resolve()
    audio: list[Path] = []
    chats: list[Path] = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            p = Path(here) / name
            if name.startswith("."):
                continue
            if p.suffix.lower() in AUDIO_EXTENSIONS:
                audio.append(p)
            elif p.suffix.lower() == ".jsonl":
                chats.append(p)
    ids = _folder_ids(folder, audio)
    for p in audio:
        if _outside(p, root):
            yield _bad(ids[p], Reason.PATH_OUTSIDE_ROOT, f"{p.name} leads outside the input folder {root} (a "
                                                         "symlink); copy the file in, or list it in a manifest")
        else:
            yield CallSource(call_id=ids[p], kind=KIND_AUDIO, path=str(p))
    for p in chats:
        if _outside(p, root):
            skipped.append(SkippedInput(str(p), Reason.PATH_OUTSIDE_ROOT, "leads outside the input folder (a symlink)"))
        elif _jsonl_kind(p) == "manifest":
            skipped.append(SkippedInput(str(p), Reason.BAD_MANIFEST, "a manifest inside an input folder is not "
                                                                     "read; pass it as an input of its own"))
        else:  # chat, or no line says: every line becomes a session or a bad_chat_session row
            yield from read_jsonl(p, kind="chat", tz=tz)


def _outside(p: Path, root: Path) -> bool:
    try:
        return not p.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return True


def _read_input(item: str, skipped: list[SkippedInput], tz: Optional[dt.tzinfo]) -> list[CallSource]:
    p = Path(item)
    if p.is_dir():
        return list(scan_folder(p, skipped, tz))
    if not p.exists():
        raise SetupError(f"input {item!r} does not exist")
    try:
        if p.suffix.lower() == ".jsonl":
            return list(read_jsonl(p, tz=tz))
        if p.suffix.lower() == ".csv":
            return list(read_csv(p, tz))
    except UnreadableInput as exc:
        log.warning("skipping input %s: %s", item, exc.detail)
        skipped.append(SkippedInput(item, exc.reason, exc.detail))
        return []
    return [CallSource(call_id=p.stem, kind=KIND_AUDIO, path=str(p))]


def discover(inputs: list[str], tz: Optional[dt.tzinfo] = None) -> Discovery:
    """All sources from the given inputs, de-duplicated by call_id (first wins; the others are listed in
    ``duplicates``), and the inputs that gave no rows (``skipped``).  ``tz``: for naive started_at."""
    found = Discovery()
    sources: list[CallSource] = []
    for item in inputs:
        sources.extend(_read_input(item, found.skipped, tz))
    seen: set[str] = set()
    for s in sources:
        safe_id = _utf8_text(s.call_id)  # e.g. GBK file names on a Linux mount: the id is what Parquet stores
        if safe_id != s.call_id:
            s = dataclasses.replace(s, call_id=safe_id)
        if s.call_id in seen:
            found.duplicates.append(s)
            log.warning("duplicate call_id %r (%s) skipped", s.call_id, s.path or "chat")
            continue
        seen.add(s.call_id)
        found.sources.append(s)
    return found
