"""Turn command-line inputs into :class:`CallSource` records.

Accepted inputs (any mix):

* a folder — audio files found recursively (call_id = relative path without extension)
  and ``*.jsonl`` chat-session files;
* a manifest ``.csv`` or ``.jsonl`` with columns ``call_id, path, agent_id, team, queue,
  started_at, channel_layout`` (paths relative to the manifest's folder);
* a chat ``.jsonl`` with one session per line: ``{dialogue_id, turns: [{role, text}, ...]}``
  (the schema of the shared dialogue corpora);
* a single audio file.

A bad manifest row or chat line becomes a source carrying ``input_error``, so it ends up
as an error row in ``sessions`` instead of stopping the batch.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Iterator, Optional

from qc_pipeline.errors import Reason, SetupError
from qc_pipeline.records import KIND_AUDIO, KIND_CHAT, ROLE_AGENT, ROLE_CUSTOMER, CallSource, ChatTurn

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".flac", ".amr", ".ogg", ".opus", ".aac", ".wma",
                              ".mp4", ".3gp", ".webm", ".au", ".aiff", ".aif", ".caf", ".gsm", ".v3", ".vox"})
MANIFEST_FIELDS = ("call_id", "path", "agent_id", "team", "queue", "started_at", "channel_layout")
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
MAX_LINE_BYTES = 16 * 1024 * 1024


def _clean(value) -> Optional[str]:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _bad(call_id: str, reason: str, detail: str, kind: str = KIND_AUDIO, path: Optional[str] = None) -> CallSource:
    return CallSource(call_id=call_id, kind=kind, path=path, input_error=(reason, detail))


def _resolve_path(raw: str, base: Path) -> tuple[Optional[str], Optional[str]]:
    """Manifest path → absolute path string, or (None, why) when it escapes the manifest's folder."""
    if "\x00" in raw:
        return None, "path contains a NUL byte"
    p = Path(raw).expanduser()
    if p.is_absolute():
        return str(p), None
    resolved = (base / p).resolve()
    try:
        resolved.relative_to(base.resolve())
    except ValueError:
        return None, f"relative path {raw!r} leaves the manifest's folder"
    return str(resolved), None


def manifest_row_to_source(row: dict, base: Path, fallback_id: str) -> CallSource:
    if not isinstance(row, dict):
        return _bad(fallback_id, Reason.BAD_MANIFEST_ROW, f"row is {type(row).__name__}, expected an object")
    call_id = _clean(row.get("call_id")) or None
    raw_path = _clean(row.get("path"))
    if raw_path is None:
        return _bad(call_id or fallback_id, Reason.BAD_MANIFEST_ROW, "row has no 'path'")
    path, why = _resolve_path(raw_path, base)
    if path is None:
        return _bad(call_id or fallback_id, Reason.PATH_OUTSIDE_ROOT, why, path=raw_path)
    if call_id is None:
        call_id = Path(raw_path).with_suffix("").as_posix().lstrip("/")
    layout_raw = (_clean(row.get("channel_layout")) or "").lower()
    if layout_raw not in LAYOUT_ALIASES:
        return _bad(call_id, Reason.BAD_MANIFEST_ROW,
                    f"channel_layout {layout_raw!r} is not one of auto, mono, agent_left, agent_right", path=path)
    return CallSource(call_id=call_id, kind=KIND_AUDIO, path=path, agent_id=_clean(row.get("agent_id")),
                      team=_clean(row.get("team")), queue=_clean(row.get("queue")),
                      started_at=_clean(row.get("started_at")), channel_layout=LAYOUT_ALIASES[layout_raw])


def chat_to_source(obj, fallback_id: str) -> CallSource:
    if not isinstance(obj, dict):
        return _bad(fallback_id, Reason.BAD_CHAT_SESSION, "line is not a JSON object", kind=KIND_CHAT)
    call_id = _clean(obj.get("call_id") or obj.get("session_id") or obj.get("dialogue_id")) or fallback_id
    turns_raw = obj.get("turns")
    if not isinstance(turns_raw, list) or not turns_raw:
        return _bad(call_id, Reason.BAD_CHAT_SESSION, "'turns' must be a non-empty list", kind=KIND_CHAT)
    turns = []
    for i, t in enumerate(turns_raw):
        if not isinstance(t, dict):
            return _bad(call_id, Reason.BAD_CHAT_SESSION, f"turn {i} is not an object", kind=KIND_CHAT)
        role = ROLE_ALIASES.get(str(t.get("role", "")).strip().lower())
        if role is None:
            return _bad(call_id, Reason.BAD_CHAT_SESSION,
                        f"turn {i} has role {t.get('role')!r}; expected agent or customer", kind=KIND_CHAT)
        text = t.get("text")
        if not isinstance(text, str):
            return _bad(call_id, Reason.BAD_CHAT_SESSION, f"turn {i} has no text string", kind=KIND_CHAT)
        start, end = t.get("start"), t.get("end")
        start = float(start) if isinstance(start, (int, float)) and not isinstance(start, bool) else None
        end = float(end) if isinstance(end, (int, float)) and not isinstance(end, bool) else None
        turns.append(ChatTurn(role=role, text=text, start=start, end=end))
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    return CallSource(call_id=call_id, kind=KIND_CHAT, path=None,
                      agent_id=_clean(obj.get("agent_id") or meta.get("agent_id")),
                      team=_clean(obj.get("team") or meta.get("team")),
                      queue=_clean(obj.get("queue") or meta.get("queue")),
                      started_at=_clean(obj.get("started_at") or meta.get("started_at")),
                      chat_turns=tuple(turns))


def _iter_jsonl(path: Path) -> Iterator[tuple[int, object, Optional[str]]]:
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if len(raw) > MAX_LINE_BYTES:
                yield n, None, f"line longer than {MAX_LINE_BYTES} bytes"
                continue
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                yield n, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield n, None, f"invalid JSON: {exc.msg} at column {exc.colno}"


def _jsonl_kind(path: Path) -> str:
    """'chat' if the first parsable object has 'turns', else 'manifest'."""
    for _n, obj, err in _iter_jsonl(path):
        if err is None:
            return "chat" if isinstance(obj, dict) and "turns" in obj else "manifest"
    return "manifest"


def read_jsonl(path: Path, kind: Optional[str] = None) -> Iterator[CallSource]:
    kind = kind or _jsonl_kind(path)
    base = path.parent
    for n, obj, err in _iter_jsonl(path):
        fallback = f"{path.stem}:{n}"
        if kind == "chat":
            yield _bad(fallback, Reason.BAD_CHAT_SESSION, err, kind=KIND_CHAT) if err else chat_to_source(obj, fallback)
        else:
            yield _bad(fallback, Reason.BAD_MANIFEST_ROW, err) if err else manifest_row_to_source(obj, base, fallback)


def read_csv(path: Path) -> Iterator[CallSource]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "path" not in [f.strip() for f in reader.fieldnames]:
            raise SetupError(f"{path}: a CSV manifest needs a header row with at least a 'path' column "
                             f"(known columns: {', '.join(MANIFEST_FIELDS)})")
        for n, row in enumerate(reader, 2):
            row = {(k or "").strip(): v for k, v in row.items()}
            yield manifest_row_to_source(row, path.parent, f"{path.stem}:{n}")


def scan_folder(folder: Path) -> Iterator[CallSource]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            p = Path(root) / name
            ext = p.suffix.lower()
            if ext in AUDIO_EXTENSIONS:
                call_id = p.relative_to(folder).with_suffix("").as_posix()
                yield CallSource(call_id=call_id, kind=KIND_AUDIO, path=str(p))
            elif ext == ".jsonl" and _jsonl_kind(p) == "chat":
                yield from read_jsonl(p, kind="chat")


def discover(inputs: list[str]) -> tuple[list[CallSource], int]:
    """All sources from the given inputs, de-duplicated by call_id (first wins).
    Returns ``(sources, n_duplicates_skipped)``."""
    sources: list[CallSource] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            sources.extend(scan_folder(p))
        elif not p.exists():
            raise SetupError(f"input {item!r} does not exist")
        elif p.suffix.lower() == ".jsonl":
            sources.extend(read_jsonl(p))
        elif p.suffix.lower() == ".csv":
            sources.extend(read_csv(p))
        else:
            sources.append(CallSource(call_id=p.stem, kind=KIND_AUDIO, path=str(p)))
    seen: set[str] = set()
    unique, dups = [], 0
    for s in sources:
        if s.call_id in seen:
            dups += 1
            log.warning("duplicate call_id %r (%s) skipped", s.call_id, s.path or "chat")
            continue
        seen.add(s.call_id)
        unique.append(s)
    return unique, dups
