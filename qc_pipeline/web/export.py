"""Coaching case packs: one file per agent with the failed items of low-score sessions.

Each row is one failed item (or one evidence quote of it) with the time stamps (mm:ss) and an
audio reference.  ``html`` packs copy the audio of each case into ``OUT/audio/`` and play it from
the evidence with a ``#t=start,end`` media fragment; ``csv``/``xlsx`` packs give path + start/end.
No matching case is an error (:class:`SetupError`), never a silent empty pack.
"""

from __future__ import annotations

import csv
import hashlib
import datetime as dt
import logging
import re
import shutil
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Optional

from qc_pipeline.errors import SetupError
from qc_pipeline.web.readmodel import ReadModel
from qc_pipeline.web.views import DEFAULT_TZ, ListQuery, SessionView, evidence_quote, fmt_ts, local_time

log = logging.getLogger(__name__)

FORMATS = ("xlsx", "csv", "html")
COLUMNS = (("agent_id", "坐席"), ("team", "班组"), ("call_id", "会话"), ("started_at", "时间"), ("total", "总分"),
           ("grade", "等级"), ("item_id", "质检项ID"), ("item_name", "质检项"), ("points", "得分"),
           ("max_points", "满分"), ("rule_id", "规则"), ("role", "角色"), ("quote", "证据原话"),
           ("start", "开始"), ("end", "结束"), ("audio", "音频"))


@dataclass(frozen=True)
class ExportOptions:
    below: Optional[float] = None      # total below this; None: sessions that missed the scorecard's pass mark
    team: Optional[str] = None
    agent_id: Optional[str] = None
    since: Optional[dt.date] = None
    until: Optional[dt.date] = None
    fmt: str = "xlsx"
    copy_audio: bool = True
    tz: str = DEFAULT_TZ


@dataclass(frozen=True)
class ExportResult:
    files: tuple[Path, ...]
    n_sessions: int
    n_rows: int
    call_ids: tuple[str, ...] = ()


def case_rows(s: SessionView, tz: str = DEFAULT_TZ) -> list[dict]:
    base = {"agent_id": s.agent_id or "", "team": s.team or "", "call_id": s.call_id,
            "started_at": local_time(s.started_at, tz), "total": s.total, "grade": s.grade or "",
            "audio": s.source_path if s.kind == "audio" else ""}
    rows = []
    for it in s.items:
        if not it.failed:
            continue
        head = {**base, "item_id": it.item_id, "item_name": it.item_name, "points": it.points,
                "max_points": it.max_points}
        if not it.evidence:
            rows.append({**head, "rule_id": "", "role": "", "quote": "（未检出相关话术）", "start": "", "end": "",
                         "start_s": None, "end_s": None})
        for ev in it.evidence:
            rows.append({**head, "rule_id": ev.get("rule_id") or "", "role": ev.get("role") or "",
                         "quote": evidence_quote(ev.get("text")), "start": fmt_ts(ev.get("start")),
                         "end": fmt_ts(ev.get("end")), "start_s": ev.get("start"), "end_s": ev.get("end")})
    return rows


def _safe_name(value: str) -> str:
    """A file-name-safe form of an id; a short hash keeps ids that sanitise alike (``a/1``, ``a_1``) apart."""
    clean = re.sub(r"[^\w.-]", "_", value)[:64] or "_"
    if clean == value:
        return clean
    return f"{clean}-{hashlib.sha1(value.encode('utf-8', 'replace')).hexdigest()[:8]}"


def _cell(value):
    """Spreadsheet-safe: text starting with = + - @ (or a tab/CR) would run as a formula in Excel; quote it."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:  # BOM: Excel opens Chinese correctly
        w = csv.writer(fh)
        w.writerow([zh for _k, zh in COLUMNS])
        for r in rows:
            w.writerow([_cell(r[k]) if r[k] is not None else "" for k, _zh in COLUMNS])


def _write_xlsx(path: Path, agent: str, sessions: list[SessionView], rows: list[dict], tz: str) -> None:
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Alignment, Font
    except ImportError:
        raise SetupError("xlsx packs need openpyxl: pip install 'qc-pipeline[web]' (or use --format csv|html)") \
            from None

    wb = Workbook()
    ws = wb.active
    ws.title = "概览"
    ws.append(["坐席", _cell(agent)])
    ws.append(["会话数", len(sessions)])
    ws.append(["平均分", round(sum(s.total for s in sessions) / len(sessions), 1)])
    ws.append([])
    ws.append(["会话", "时间", "总分", "等级", "未通过项"])
    for s in sessions:
        ws.append([_cell(s.call_id), _cell(local_time(s.started_at, tz)), s.total, s.grade, "、".join(s.failed_items)])
    cases = wb.create_sheet("案例")
    cases.append([zh for _k, zh in COLUMNS])
    for c in cases[1]:
        c.font = Font(bold=True)
    for r in rows:
        cases.append([_cell(r[k]) for k, _zh in COLUMNS])
    widths = {"C": 26, "D": 22, "H": 12, "M": 60, "P": 40}
    for col, wd in widths.items():
        cases.column_dimensions[col].width = wd
    for row in cases.iter_rows(min_row=2, min_col=13, max_col=13):
        for c in row:
            c.alignment = Alignment(wrap_text=True, vertical="top")
    cases.freeze_panes = "A2"
    wb.save(path)


def _copy_audio(s: SessionView, out: Path) -> Optional[str]:
    if s.kind != "audio" or not s.source_path:
        return None
    src = Path(s.source_path)
    if not src.is_file():
        log.warning("audio of %s not found at %s; the pack links nothing", s.call_id, src)
        return None
    rel = f"audio/{_safe_name(s.call_id)}{src.suffix.lower()}"
    (out / "audio").mkdir(exist_ok=True)
    if not (out / rel).exists():
        shutil.copyfile(src, out / rel)
    return rel


_PACK_CSS = """body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei","PingFang SC","WenQuanYi Micro Hei",sans-serif;margin:24px;color:#111}
section{border:1px solid #ddd;border-radius:6px;padding:12px 16px;margin:16px 0}blockquote{margin:6px 0;
padding:6px 10px;background:#fff7ed;border-left:3px solid #f97316}.muted{color:#6b7280;font-size:12px}
h3{margin:10px 0 4px}"""


def _write_html(path: Path, agent: str, sessions: list[SessionView], out: Path, copy_audio: bool,
                tz: str = DEFAULT_TZ) -> None:
    parts = [f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>辅导案例 {escape(agent)}'
             f'</title><style>{_PACK_CSS}</style></head><body><h1>辅导案例包：坐席 {escape(agent)}</h1>'
             f'<p>{len(sessions)} 个低分会话，平均分 {sum(s.total for s in sessions) / len(sessions):.1f}</p>']
    for s in sessions:
        audio = _copy_audio(s, out) if copy_audio else (Path(s.source_path).as_uri() if s.kind == "audio"
                                                         and s.source_path else None)
        parts.append(f'<section><h2>{escape(s.call_id)} — {s.total:g} 分（{escape(s.grade or "")}）</h2>'
                     f'<p class="muted">{escape(local_time(s.started_at, tz))} · 班组 {escape(s.team or "")} · '
                     f'{escape(s.queue or "")}</p>')
        for it in s.items:
            if not it.failed:
                continue
            parts.append(f'<h3>{escape(it.item_name)} <span class="muted">{escape(it.item_id)} · '
                         f'{it.points:g}/{it.max_points:g}</span></h3>')
            if not it.evidence:
                parts.append('<p class="muted">（未检出相关话术：应有而未说）</p>')
            for ev in it.evidence:
                ts = f'{fmt_ts(ev.get("start"))}–{fmt_ts(ev.get("end"))}' if ev.get("start") is not None else ""
                parts.append(f'<blockquote>{escape(evidence_quote(ev.get("text")))}'
                             f'<div class="muted">{escape(ev.get("role") or "")} {escape(ts)} '
                             f'规则 {escape(ev.get("rule_id") or "")}</div>')
                if audio and ev.get("start") is not None:
                    frag = f'#t={ev["start"]:.2f},{(ev.get("end") or ev["start"]):.2f}'
                    parts.append(f'<audio controls preload="none" src="{escape(audio + frag)}"></audio>')
                parts.append('</blockquote>')
        parts.append("</section>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")


def export_cases(model: ReadModel, out_dir: str | Path, opts: ExportOptions) -> ExportResult:
    if opts.fmt not in FORMATS:
        raise SetupError(f"unknown --format {opts.fmt!r}; use one of {', '.join(FORMATS)}")
    q = ListQuery(date_from=opts.since, date_to=opts.until, team=opts.team, agent_id=opts.agent_id,
                  below=opts.below, not_passed=opts.below is None)
    sessions = [s for s in model.sessions(q, with_items=True) if s.total is not None]
    if not sessions:
        low = "below the pass mark" if opts.below is None else f"below {opts.below:g}"
        raise SetupError(f"no scored session {low} matched (team={opts.team}, agent={opts.agent_id}, "
                         f"since={opts.since}, until={opts.until}) in {model.root}; loosen the filters or --below")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_agent: dict[str, list[SessionView]] = {}
    for s in sessions:
        by_agent.setdefault(s.agent_id or "unknown", []).append(s)
    files, n_rows = [], 0
    for agent, group in sorted(by_agent.items()):
        rows = [r for s in group for r in case_rows(s, opts.tz)]
        n_rows += len(rows)
        path = out / f"coaching_{_safe_name(agent)}.{opts.fmt}"
        if opts.fmt == "csv":
            _write_csv(path, rows)
        elif opts.fmt == "xlsx":
            _write_xlsx(path, agent, group, rows, opts.tz)
        else:
            _write_html(path, agent, group, out, opts.copy_audio, opts.tz)
        files.append(path)
    log.info("wrote %d case packs (%d sessions, %d rows) to %s", len(files), len(sessions), n_rows, out)
    return ExportResult(tuple(files), len(sessions), n_rows, tuple(s.call_id for s in sessions))
