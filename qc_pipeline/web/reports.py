"""Three-level reports (center / team / agent): weekly mean score, item pass rates, counts.

``build_report`` returns plain JSON-able data (served by ``/api/reports``); ``render_report``
turns it into a self-contained HTML page with inline SVG line charts.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Iterable, Optional

from qc_pipeline.web.views import parse_week


LEVELS = ("center", "team", "agent")
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563")


def week_of(d: dt.date) -> str:
    y, w, _ = d.isocalendar()
    return f"{y}-W{w:02d}"


def _monday(week: str) -> dt.date:
    return parse_week(week)[0]


def _week_range(weeks: Iterable[str]) -> list[str]:
    """Every ISO week from the first to the last one given, gaps included (so the x axis is true to time)."""
    weeks = list(weeks)
    if not weeks:
        return []
    monday, last = _monday(min(weeks)), _monday(max(weeks))
    out = []
    while monday <= last:
        out.append(week_of(monday))
        monday += dt.timedelta(days=7)
    return out


def build_report(series_rows: Iterable[tuple], item_rows: Iterable[tuple], level: str = "center") -> dict:
    """From the read model's weekly aggregates (:meth:`ReadModel.weekly`):
    ``(group, week, n, mean, n_not_passed)`` and ``(item_id, item_name, week, n_applicable, n_passed)``.
    "below" counts sessions that missed the scorecard's own pass mark (``scores.passed``)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    series_rows, item_rows = list(series_rows), list(item_rows)
    weeks = _week_range(r[1] for r in series_rows)
    groups: dict[str, list[tuple]] = {}
    for g, wk, n, mean, below in series_rows:
        groups.setdefault(g, []).append((wk, n, mean, below))
    series = []
    for key in sorted(groups):
        pts = [{"week": wk, "mean": round(mean, 2), "n": n, "below": below} for wk, n, mean, below in sorted(groups[key])]
        n_all = sum(p["n"] for p in pts)
        series.append({"key": key, "n": n_all, "mean": round(sum(p["mean"] * p["n"] for p in pts) / n_all, 2),
                       "below": sum(p["below"] for p in pts), "weeks": pts})
    items: dict[str, dict] = {}
    for iid, name, wk, n, n_pass in item_rows:
        it = items.setdefault(iid, {"item_id": iid, "item_name": name, "weeks": []})
        it["weeks"].append({"week": wk, "pass_rate": round(n_pass / n, 4), "n": n})
    return {"level": level, "weeks": weeks, "n_sessions": sum(s["n"] for s in series), "series": series,
            "items": [items[k] for k in sorted(items)]}


def svg_line_chart(weeks: list[str], lines: list[tuple[str, dict[str, float]]], *, y_max: float = 100.0,
                   width: int = 720, height: int = 260, title: str = "") -> str:
    """Inline SVG: one polyline per (label, {week: value}); x = weeks, y = 0..y_max."""
    left, right, top, bottom = 44, 150, 24, 40
    pw, ph = width - left - right, height - top - bottom
    n = max(len(weeks), 1)

    def x(i: int) -> float:
        return left + (pw * (i + 0.5) / n)

    def y(v: float) -> float:
        return top + ph * (1 - max(0.0, min(v, y_max)) / y_max)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for frac in (0, 0.25, 0.5, 0.75, 1):
        yy = y(y_max * frac)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e5e7eb"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end" fill="#6b7280">'
                   f'{y_max * frac:g}</text>')
    step = max(1, n // 10)
    for i, w in enumerate(weeks):
        if i % step == 0:
            out.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle" '
                       f'fill="#6b7280">{escape(w)}</text>')
    for k, (label, values) in enumerate(lines):
        color = PALETTE[k % len(PALETTE)]
        pts = [(x(i), y(values[w])) for i, w in enumerate(weeks) if w in values]
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>')
        ly = top + 14 * k + 6
        out.append(f'<rect x="{left + pw + 12}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + pw + 26}" y="{ly + 1}" font-size="12">{escape(label[:18])}</text>')
    out.append("</svg>")
    return "".join(out)


def report_body(rep: dict, max_lines: int = 8) -> str:
    """HTML fragment (charts + tables) for a report dict; shared by the CLI file and the app page."""
    weeks = rep["weeks"]
    level_zh = {"center": "中心", "team": "班组", "agent": "坐席"}[rep["level"]]
    lines = [(s["key"], {p["week"]: p["mean"] for p in s["weeks"]}) for s in rep["series"][:max_lines]]
    parts = [f'<h2>每周平均分（{level_zh}）</h2>',
             f'<p>{rep["n_sessions"]} 个已评分会话，{len(weeks)} 周；未达评分表及格线的计为低分。</p>',
             svg_line_chart(weeks, lines, title=f"weekly mean score by {rep['level']}")]
    if len(rep["series"]) > max_lines:
        parts.append(f'<p class="muted">图中只画前 {max_lines} 条，全部见下表。</p>')
    parts.append('<table><thead><tr><th>' + level_zh + '</th><th>会话数</th><th>低分数</th><th>平均分</th>'
                 + "".join(f"<th>{escape(w)}</th>" for w in weeks) + '</tr></thead><tbody>')
    for s in rep["series"]:
        by = {p["week"]: p for p in s["weeks"]}
        cells = "".join(f'<td>{by[w]["mean"]:.1f} <span class="muted">({by[w]["n"]})</span></td>' if w in by
                        else "<td></td>" for w in weeks)
        parts.append(f'<tr><td>{escape(s["key"])}</td><td>{s["n"]}</td><td>{s["below"]}</td><td>{s["mean"]:.1f}</td>'
                     f'{cells}</tr>')
    parts.append("</tbody></table><h2>质检项每周通过率</h2>")
    ilines = [(i["item_name"], {p["week"]: 100 * p["pass_rate"] for p in i["weeks"]}) for i in rep["items"]]
    parts.append(svg_line_chart(weeks, ilines[:max_lines], title="item pass rate % by week"))
    parts.append('<table><thead><tr><th>质检项</th>' + "".join(f"<th>{escape(w)}</th>" for w in weeks)
                 + '</tr></thead><tbody>')
    for i in rep["items"]:
        by = {p["week"]: p for p in i["weeks"]}
        cells = "".join(f'<td>{100 * by[w]["pass_rate"]:.0f}%</td>' if w in by else "<td></td>" for w in weeks)
        parts.append(f'<tr><td>{escape(i["item_name"])} <span class="muted">{escape(i["item_id"])}</span></td>'
                     f'{cells}</tr>')
    parts.append("</tbody></table>")
    return "".join(parts)


REPORT_CSS = """body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei","PingFang SC","WenQuanYi Micro Hei",sans-serif;margin:24px;color:#111}
table{border-collapse:collapse;margin:8px 0 24px;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:left}th{background:#f3f4f6}.muted{color:#6b7280;font-size:12px}.chart{max-width:100%;height:auto}
.trend{font-size:11px;color:#92400e}"""


def render_report(reps: list[dict], *, title: str, generated: Optional[str] = None, extra: str = "") -> str:
    """A self-contained page of the level reports, then ``extra`` (an already escaped HTML fragment)."""
    generated = generated or dt.datetime.now().isoformat(timespec="seconds")
    body = "".join(report_body(r) for r in reps) + extra
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{REPORT_CSS}</style></head><body><h1>{escape(title)}</h1>'
            f'<p class="muted">生成于 {escape(generated)}</p>{body}</body></html>')
