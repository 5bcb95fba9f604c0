"""Call reasons and types report (the operations manual's 客户需求白皮书 use): the top call reasons and call
types by ISO week and by team — counts, shares, the trend against the week before —, calls over the handling
time target by call type, and the resolved share where it is known.

Built from the read model's rows (:meth:`ReadModel.call_reasons`, the summaries table as stored: nothing is
re-derived, no threshold applied here).  Every number in the HTML links to the session list filtered to
exactly the calls it counts: ``reason`` / ``type``, ``week``, ``team``, ``over_target``, ``resolved``, plus the
report's own ``from`` / ``to`` / ``team``.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Optional
from urllib.parse import urlencode

from qc_pipeline.web.reports import _week_range
from qc_pipeline.web.views import NO_TEAM

DIMS = {"reason": "来电原因", "type": "来电类型"}   # dimension -> heading; also the list filter's parameter
CSV_COLUMNS = ("dimension", "value", "team", "week", "n", "n_over_target", "n_target_known", "n_resolved",
               "n_resolved_known")


def _share(n: int, of: int) -> Optional[float]:
    return round(n / of, 4) if of else None


def _dimension(rows: list[tuple], weeks: list[str], teams: list[Optional[str]]) -> list[dict]:
    """One entry per value (most calls first) with its totals, per-week and per-team cells."""
    week_total: dict[str, int] = {}
    team_total: dict[Optional[str], int] = {}
    acc: dict[str, dict] = {}
    for value, team, week, n, over, over_known, res, res_known in rows:
        week_total[week] = week_total.get(week, 0) + n
        team_total[team] = team_total.get(team, 0) + n
        a = acc.setdefault(value, {"n": 0, "over": 0, "over_known": 0, "res": 0, "res_known": 0,
                                   "week": {}, "week_over": {}, "team": {}, "team_week": {}})
        for k, v in (("n", n), ("over", over), ("over_known", over_known), ("res", res), ("res_known", res_known)):
            a[k] += v
        for key, bucket, v in ((week, "week", n), (week, "week_over", over), (team, "team", n),
                               ((team, week), "team_week", n)):
            a[bucket][key] = a[bucket].get(key, 0) + v
    total = sum(week_total.values())
    last, prev = (weeks[-1] if weeks else None), (weeks[-2] if len(weeks) > 1 else None)
    out = []
    for value, a in sorted(acc.items(), key=lambda kv: (-kv[1]["n"], kv[0])):
        by_week, before = [], None
        for w in weeks:
            n_w = a["week"].get(w, 0)
            share = _share(n_w, week_total.get(w, 0))
            by_week.append({"week": w, "n": n_w, "share": share, "over_target": a["week_over"].get(w, 0),
                            "delta": None if before is None else n_w - before[0],
                            "share_delta": None if before is None or None in (share, before[1])
                            else round(share - before[1], 4)})
            before = (n_w, share)
        by_team = []
        for t in teams:
            n_t, n_last = a["team"].get(t, 0), a["team_week"].get((t, last), 0)
            by_team.append({"team": t, "n": n_t, "share": _share(n_t, team_total.get(t, 0)), "last_week": n_last,
                            "delta": None if prev is None else n_last - a["team_week"].get((t, prev), 0)})
        out.append({"value": value, "n": a["n"], "share": _share(a["n"], total),
                    "over_target": {"n": a["over"], "known": a["over_known"],
                                    "share": _share(a["over"], a["over_known"])},
                    "resolved": {"n": a["res"], "known": a["res_known"], "share": _share(a["res"], a["res_known"])},
                    "weeks": by_week, "teams": by_team})
    return out


def build_reasons(cubes: dict[str, list[tuple]], n_unsummarized: int = 0) -> dict:
    """JSON-able report from ``(cubes, n_unsummarized)`` of :meth:`ReadModel.call_reasons`.  Shares: of the
    calls with a summary in that week / team; resolved and over-target shares: of the calls where it is known."""
    all_rows = [r for rows in cubes.values() for r in rows]
    weeks = _week_range({r[2] for r in all_rows})
    teams = sorted({r[1] for r in all_rows}, key=lambda t: (t is None, t or ""))
    first = next(iter(cubes.values()), [])
    return {"weeks": weeks, "teams": teams, "n_calls": sum(r[3] for r in first), "n_unsummarized": n_unsummarized,
            **{dim: _dimension(cubes.get(dim, []), weeks, teams) for dim in DIMS}}


def reasons_csv(cubes: dict[str, list[tuple]]) -> str:
    """The report's rows as CSV (UTF-8 with BOM for Excel; cells that would run as formulas are quoted)."""
    from qc_pipeline.web.export import _cell

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for dim, rows in cubes.items():
        for value, team, *rest in rows:
            w.writerow([dim, _cell(value), _cell(team or ""), *rest])
    return "\ufeff" + buf.getvalue()


# -- HTML --------------------------------------------------------------------------------------------
def _pct(v: Optional[float]) -> str:
    return "" if v is None else f"{100 * v:.0f}%"


def _trend(delta: Optional[int], share_delta: Optional[float] = None) -> str:
    if delta is None:
        return ""
    pts = "" if share_delta is None else f"（{100 * share_delta:+.1f} 个百分点）"
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else "＝"
    return f' <span class="trend" title="较上周 {delta:+d} 通{pts}">{arrow}{abs(delta) if delta else ""}</span>'


def reasons_body(rep: dict, link: Optional[str] = "", filters: Optional[dict] = None, top: int = 10) -> str:
    """HTML fragment for a reasons report; shared by the CLI file and the app page.  ``link``: prefix of the
    session list links (``""``: the app itself, a URL: the app elsewhere, None: plain numbers);
    ``filters``: the report's own ``from``/``to``/``team``, carried into every link."""
    filters = {k: v for k, v in (filters or {}).items() if v}

    def num(n: int, **params) -> str:
        if link is None or not n or params.get("team", "") is None:
            return str(n)
        href = f"{link}/sessions?" + urlencode({**filters, **params})
        return f'<a class="drill" href="{escape(href)}">{n}</a>'

    weeks, teams = rep["weeks"], rep["teams"]
    parts = ['<h2 id="reasons">来电原因与类型（客户需求）</h2>',
             f'<p>{rep["n_calls"]} 个有小结的会话，{len(weeks)} 周（ISO 周）。'
             f'{rep["n_unsummarized"]} 个会话没有小结（早于小结阶段的运行，或处理失败），不计入。'
             '占比：占该周 / 该班组有小结会话的比例；▲▼：较上周的通数变化。</p>']
    if not rep["n_calls"]:
        parts.append('<p class="muted">这些结果里没有小结（summaries 表）：用带小结阶段的 qc-pipeline 重新运行后才有本节。</p>')
        return "".join(parts)
    for dim, heading in DIMS.items():
        values = rep[dim]
        shown = values[:top]
        more = f'（前 {top} 项，共 {len(values)} 项；全部见 JSON/CSV）' if len(values) > top else ""
        parts.append(f'<h3>{heading} · 按周{more}</h3><table class="reasons-week" data-dim="{dim}"><thead><tr>'
                     f'<th>{heading}</th><th>合计</th><th>已解决（已知）</th>'
                     + "".join(f"<th>{escape(w)}</th>" for w in weeks) + "</tr></thead><tbody>")
        for v in shown:
            res = v["resolved"]
            unresolved = res["known"] - res["n"]
            resolved = (f'{_pct(res["share"])} <span class="muted">({res["n"]}/{res["known"]})</span>'
                        + (f' 未解决 {num(unresolved, **{dim: v["value"]}, resolved="0")}' if unresolved else "")
                        if res["known"] else '<span class="muted">未知</span>')
            cells = "".join(f'<td data-week="{escape(c["week"])}">{num(c["n"], **{dim: v["value"]}, week=c["week"])}'
                            f' <span class="muted">{_pct(c["share"])}</span>{_trend(c["delta"], c["share_delta"])}</td>'
                            for c in v["weeks"])
            parts.append(f'<tr data-value="{escape(v["value"])}"><td>{escape(v["value"])}</td>'
                         f'<td>{num(v["n"], **{dim: v["value"]})} <span class="muted">{_pct(v["share"])}</span></td>'
                         f'<td>{resolved}</td>{cells}</tr>')
        parts.append("</tbody></table>")
        last = f"（最近一周 {escape(weeks[-1])} 较上周）" if len(weeks) > 1 else ""
        parts.append(f'<h3>{heading} · 按班组{last}</h3><table class="reasons-team" data-dim="{dim}"><thead><tr>'
                     f'<th>{heading}</th>' + "".join(f"<th>{escape(t or NO_TEAM)}</th>" for t in teams)
                     + "</tr></thead><tbody>")
        for v in shown:
            cells = "".join(f'<td>{num(c["n"], **{dim: v["value"]}, team=c["team"])} '
                            f'<span class="muted">{_pct(c["share"])}</span>{_trend(c["delta"])}</td>'
                            for c in v["teams"])
            parts.append(f'<tr data-value="{escape(v["value"])}"><td>{escape(v["value"])}</td>{cells}</tr>')
        parts.append("</tbody></table>")
    parts.append('<h3>超出处理时长目标 · 按来电类型</h3><table class="over-target"><thead><tr><th>来电类型</th>'
                 '<th>会话数</th><th>有时长目标</th><th>超时</th>' + "".join(f"<th>{escape(w)}</th>" for w in weeks)
                 + "</tr></thead><tbody>")
    for v in rep["type"]:
        o = v["over_target"]
        cells = "".join(f'<td>{num(c["over_target"], type=v["value"], week=c["week"], over_target="1")}</td>'
                        for c in v["weeks"])
        parts.append(f'<tr data-value="{escape(v["value"])}"><td>{escape(v["value"])}</td><td>{v["n"]}</td>'
                     f'<td>{o["known"]}</td><td>{num(o["n"], type=v["value"], over_target="1")} '
                     f'<span class="muted">{_pct(o["share"])}</span></td>{cells}</tr>')
    parts.append('</tbody></table><p class="muted">时长目标按来电类型取自运营手册（summary.duration_targets_min），'
                 '由小结阶段判定并存储；没有目标或没有时长的会话不计入“有时长目标”。</p>')
    return "".join(parts)
