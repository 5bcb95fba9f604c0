"""Server-rendered HTML pages (all output escaped; UTF-8, lang=zh-CN; inline CSS, small vanilla JS)."""

from __future__ import annotations

from html import escape
from typing import Optional
from urllib.parse import quote, urlencode

from qc_pipeline.web.access import ACTION_PERMISSION, allowed
from qc_pipeline.web.data import SessionView, evidence_keywords, fmt_ts
from qc_pipeline.web.db import User

CSS = """*{box-sizing:border-box}body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei","PingFang SC","WenQuanYi Micro Hei",sans-serif;margin:0;
color:#111;background:#f8fafc;font-size:14px}header{background:#1e293b;color:#fff;padding:8px 20px;display:flex;
gap:16px;align-items:center;flex-wrap:wrap}header a{color:#e2e8f0;text-decoration:none}header .me{margin-left:auto}
header form{display:inline}main{padding:16px 20px;max-width:1400px}table{border-collapse:collapse;width:100%;
background:#fff}th,td{border-bottom:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f1f5f9;font-weight:600;white-space:nowrap}.nowrap{white-space:nowrap}.muted{color:#64748b;font-size:12px}.tag{display:inline-block;
background:#fee2e2;color:#991b1b;border-radius:4px;padding:0 6px;margin:1px;font-size:12px}
.tag.ok{background:#dcfce7;color:#166534}.tag.warn{background:#fef3c7;color:#92400e}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:12px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#475569}
input,select,button,textarea{font:inherit;padding:4px 6px}button{cursor:pointer;background:#2563eb;color:#fff;
border:0;border-radius:4px;padding:5px 12px}.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);
gap:16px}@media(max-width:900px){.grid{grid-template-columns:1fr}}.card{background:#fff;border:1px solid #e2e8f0;
border-radius:6px;padding:12px}.transcript{max-height:70vh;overflow:auto}.utt{padding:6px 8px;border-radius:4px;
cursor:pointer;border-left:3px solid transparent}.utt:hover{background:#f1f5f9}.utt.agent{border-left-color:#2563eb}
.utt.customer{border-left-color:#f97316}.utt.evidence{background:#fff7ed}.utt.playing{background:#dbeafe}
.utt .who{font-size:12px;color:#64748b}mark{background:#fde047;padding:0 1px}audio{width:100%}
.review textarea{width:100%;height:3em}.review{display:grid;grid-template-columns:auto auto 1fr auto;gap:4px;
align-items:start;margin-top:4px}.failed td:first-child{border-left:3px solid #dc2626}.err{color:#b91c1c}
.pager a{margin:0 6px}.login{max-width:320px;margin:80px auto}.login input{width:100%;margin-bottom:8px}"""

NAV = (("/queue", "复核队列", "queue"), ("/sessions", "会话", "sessions"), ("/calibration", "校准", "calibration"),
       ("/reports", "报表", "reports"), ("/export", "辅导导出", "export"), ("/users", "用户", "users"))
ROLE_ZH = {"reviewer": "质检员", "trainer": "培训师", "agent": "坐席", "admin": "管理员"}
ACTION_ZH = {"confirm": "确认", "override": "改判", "appeal": "申诉", "appeal_decision": "申诉裁定"}


def layout(title: str, body: str, user: Optional[User] = None, csrf: str = "", nonce: str = "",
           script: str = "") -> str:
    nav = ""
    if user is not None:
        links = "".join(f'<a href="{href}">{label}</a>' for href, label, perm in NAV if allowed(user, perm))
        nav = (f'<header><strong>质检复核</strong>{links}<span class="me">{escape(user.username)} · '
               f'{ROLE_ZH.get(user.role, user.role)}</span><form method="post" action="/logout">'
               f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button>退出</button></form></header>')
    js = f'<script nonce="{escape(nonce)}">{script}</script>' if script else ""
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{escape(title)}</title><style>{CSS}</style>'
            f'</head><body>{nav}<main>{body}</main>{js}</body></html>')


def login_page(csrf: str, error: str = "", next_url: str = "/") -> str:
    err = f'<p class="err">{escape(error)}</p>' if error else ""
    return layout("登录", f'<div class="login card"><h2>质检复核系统 登录</h2>{err}<form method="post" '
                  f'action="/login"><input type="hidden" name="csrf" value="{escape(csrf)}">'
                  f'<input type="hidden" name="next" value="{escape(next_url)}">'
                  f'<label>用户名<input name="username" autocomplete="username" required></label>'
                  f'<label>密码<input name="password" type="password" autocomplete="current-password" required>'
                  f'</label><button type="submit">登录</button></form></div>')


def message_page(title: str, text: str, user: Optional[User] = None, csrf: str = "") -> str:
    return layout(title, f'<h2>{escape(title)}</h2><p>{escape(text)}</p>', user, csrf)


def _num(v: Optional[float]) -> str:
    return "" if v is None else f"{v:g}"


FLAG_ZH = {"low_score": "低分", "veto": "否决", "compliance_hit": "合规命中", "customer_emotion_low": "客户情绪低",
           "low_role_confidence": "角色置信度低", "escalation_risk": "升级风险", "attitude_issue": "态度问题"}


def _tags(reasons) -> str:
    return "".join(f'<span class="tag" title="{escape(r)}">{escape(FLAG_ZH.get(r, r))}</span>' for r in reasons)


def _when(started_at: Optional[str]) -> str:
    """'2026-10-05T10:00:00+08:00' -> '2026-10-05 10:00' (local time as recorded)."""
    return (started_at or "")[:16].replace("T", " ")


def session_link(call_id: str) -> str:
    return "/sessions/" + quote(call_id, safe="")


def list_page(*, title: str, action: str, rows: list[SessionView], total_rows: int, page: int, per_page: int,
              params: dict, teams: list[str], agents: list[str], items: dict[str, str], threshold: float,
              user: User, csrf: str) -> str:
    def sel(name: str, options, labels=None) -> str:
        cur = params.get(name) or ""
        opts = "".join(f'<option value="{escape(o)}"{" selected" if o == cur else ""}>'
                       f'{escape((labels or {}).get(o, o))}</option>' for o in options)
        return f'<select name="{name}"><option value="">全部</option>{opts}</select>'

    agent_filter = "" if user.role == "agent" else f'<label>坐席{sel("agent", agents)}</label>'
    flags = ["low_score", "veto", "compliance_hit", "customer_emotion_low", "low_role_confidence",
             "escalation_risk", "attitude_issue"]
    form = (f'<form class="filters" method="get" action="{action}">'
            f'<label>开始日期<input type="date" name="from" value="{escape(params.get("from") or "")}"></label>'
            f'<label>结束日期<input type="date" name="to" value="{escape(params.get("to") or "")}"></label>'
            f'<label>班组{sel("team", teams)}</label>{agent_filter}'
            f'<label>未通过项{sel("item", list(items), items)}</label><label>标记{sel("flag", flags, FLAG_ZH)}</label>'
            f'<button type="submit">筛选</button></form>')
    body_rows = []
    for s in rows:
        score = "—" if s.total is None else f"{s.total:g} <span class=\"muted\">{escape(s.grade or '')}</span>"
        failed = "、".join(items.get(i, i) for i in s.failed_items)
        body_rows.append(f'<tr><td><a href="{session_link(s.call_id)}">{escape(s.call_id)}</a>'
                         f'<div class="muted">{escape(s.kind)}</div></td><td class="nowrap">{escape(_when(s.started_at))}</td>'
                         f'<td>{escape(s.team or "")}</td><td>{escape(s.agent_id or "")}</td><td>{score}</td>'
                         f'<td>{_tags(s.reasons(threshold, include_failed=True))}</td><td>{escape(failed)}</td></tr>')
    n_pages = max(1, -(-total_rows // per_page))
    q = {k: v for k, v in params.items() if v and k != "page"}
    pager = "".join(f'<a href="{action}?{escape(urlencode({**q, "page": p}))}">{p}</a>' if p != page
                    else f"<strong>{p}</strong>" for p in range(1, min(n_pages, 30) + 1))
    body = (f'<h2>{escape(title)} <span class="muted">共 {total_rows} 条</span></h2>{form}'
            f'<table class="list"><thead><tr><th>会话</th><th>时间</th><th>班组</th><th>坐席</th><th>总分</th>'
            f'<th>标记</th><th>未通过项</th></tr></thead><tbody>{"".join(body_rows)}</tbody></table>'
            f'<p class="pager">页：{pager}</p>')
    return layout(title, body, user, csrf)


def _highlight(text: str, keywords: list[str]) -> str:
    """Escape ``text`` and wrap each keyword occurrence in <mark> (longest keywords first)."""
    spans: list[tuple[int, int]] = []
    for kw in sorted(set(keywords), key=len, reverse=True):
        start = text.find(kw)
        while start >= 0:
            end = start + len(kw)
            if all(end <= a or start >= b for a, b in spans):
                spans.append((start, end))
            start = text.find(kw, end)
    out, pos = [], 0
    for a, b in sorted(spans):
        out.append(escape(text[pos:a]) + "<mark>" + escape(text[a:b]) + "</mark>")
        pos = b
    return "".join(out) + escape(text[pos:])


PLAYER_JS = """(function(){var a=document.getElementById('player');var u=[].slice.call(document.querySelectorAll('.utt'));
function seek(t){if(a&&!isNaN(t)){a.currentTime=t;a.play().catch(function(){});}}
u.forEach(function(el){el.addEventListener('click',function(){seek(parseFloat(el.dataset.start));});});
[].forEach.call(document.querySelectorAll('a.ev'),function(l){l.addEventListener('click',function(e){
var el=document.getElementById(l.getAttribute('href').slice(1));if(el){e.preventDefault();
el.scrollIntoView({block:'center'});seek(parseFloat(el.dataset.start));}});});
if(a){a.addEventListener('timeupdate',function(){var t=a.currentTime;u.forEach(function(el){
var on=t>=parseFloat(el.dataset.start)&&t<parseFloat(el.dataset.end);if(on&&!el.classList.contains('playing')){
el.scrollIntoView({block:'nearest'});}el.classList.toggle('playing',on);});});}})();"""


def _history_row(h: dict) -> str:
    """One review event; events made on an earlier run of the call are marked as not in force."""
    attr, run = "", ""
    if not h.get("current_run", True):
        attr = ' class="earlier-run muted"'
        run = f'<span class="tag warn" title="run {escape(h.get("run_id") or "")}">早前运行 · 不计入</span>'
    return (f'<tr{attr}><td>{h["id"]}</td><td>{escape(h["created_at"])}</td><td>{escape(h["item_id"])}</td>'
            f'<td>{ACTION_ZH.get(h["action"], h["action"])}</td><td>{_num(h["machine_points"])}</td>'
            f'<td>{_num(h["new_points"])}</td><td>{escape(h["comment"])}</td>'
            f'<td>{escape(h["user"])} ({escape(h["role"])})</td><td>{run}</td></tr>')


def session_page(s: SessionView, utterances: list[dict], state: dict[str, dict], history: list[dict], *,
                 threshold: float, user: User, csrf: str, nonce: str) -> str:
    marks: dict[int, list[str]] = {}
    for it in s.items:
        for ev in it.evidence:
            if ev.get("turn_index") is not None:
                marks.setdefault(ev["turn_index"], []).extend(evidence_keywords(ev.get("text")))
    lines = []
    for u in utterances:
        ti = u["turn_index"]
        cls = "utt " + escape(u["role"]) + (" evidence" if ti in marks else "")
        ts = f"{fmt_ts(u['start'])}–{fmt_ts(u['end'])}" if u["start"] is not None else f"#{ti}"
        emo = "" if u["emotion_index"] is None else f" · 情绪 {u['emotion_index']:.0f}"
        lines.append(f'<div class="{cls}" id="turn-{ti}" data-start="{u["start"] if u["start"] is not None else ""}"'
                     f' data-end="{u["end"] if u["end"] is not None else ""}"><div class="who">'
                     f'{escape({"agent": "坐席", "customer": "客户"}.get(u["role"], u["role"]))} · {ts}{emo}</div>'
                     f'{_highlight(u["text"], marks.get(ti, []))}</div>')
    player = ""
    if s.kind == "audio":
        player = (f'<audio id="player" controls preload="metadata" '
                  f'src="/api/sessions/{quote(s.call_id, safe="")}/audio"></audio>')
    actions = [a for a, perm in ACTION_PERMISSION.items() if allowed(user, perm)]
    items_html = []
    for it in s.items:
        st = state.get(it.item_id)
        reviewed = ""
        if st:
            pts = "" if st.get("points") is None else f' → <strong>{st["points"]:g}</strong>'
            reviewed = (f'<div class="muted">{ACTION_ZH.get(st["action"], st["action"])}{pts} · '
                        f'{escape(st["user"])}</div>')
        turns = {ev["turn_index"]: ev.get("start") for ev in it.evidence if ev.get("turn_index") is not None}
        evs = " ".join(f'<a class="ev" href="#turn-{ti}">{escape(fmt_ts(start) or "#" + str(ti))}</a>'
                       for ti, start in sorted(turns.items()))
        form = ""
        if actions and it.applicable:
            opts = "".join(f'<option value="{a}">{ACTION_ZH[a]}</option>' for a in actions)
            form = (f'<form class="review" method="post" action="{session_link(s.call_id)}/review">'
                    f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
                    f'<input type="hidden" name="item_id" value="{escape(it.item_id)}">'
                    f'<select name="action" aria-label="操作">{opts}</select>'
                    f'<input name="new_points" type="number" step="0.5" min="0" max="{it.max_points:g}" '
                    f'placeholder="分数" aria-label="新分数" style="width:5em">'
                    f'<textarea name="comment" placeholder="复核意见" aria-label="意见"></textarea>'
                    f'<button type="submit">提交</button></form>')
        status = '<span class="tag">未通过</span>' if it.failed else '<span class="tag ok">通过</span>'
        if not it.applicable:
            status = '<span class="tag warn">不适用</span>'
        items_html.append(f'<tr class="{"failed" if it.failed else ""}" data-item="{escape(it.item_id)}"><td>'
                          f'{escape(it.item_name)} <span class="muted">{escape(it.item_id)}</span><div>{status}</div>'
                          f'</td><td>{it.points:g}/{it.max_points:g}{reviewed}</td><td>{evs}{form}</td></tr>')
    hist = "".join(_history_row(h) for h in history)
    score = "未评分" if s.total is None else f"{s.total:g} 分 · {escape(s.grade or '')}"
    meta = " · ".join(x for x in (s.started_at, s.team and f"班组 {s.team}", s.agent_id and f"坐席 {s.agent_id}",
                                  s.queue, s.role_confidence is not None and f"角色置信度 {s.role_confidence:.2f}",
                                  s.status == "failed" and f"处理失败 {s.error_reason}") if x)
    body = (f'<h2>{escape(s.call_id)} <span class="muted">{score}</span></h2>'
            f'<p class="muted">{escape(meta)}</p>'
            f'<p>{_tags(s.reasons(threshold, include_failed=True))}</p>'
            f'<div class="grid"><div class="card">{player}<div class="transcript">{"".join(lines)}</div></div>'
            f'<div class="card"><h3>评分明细</h3><table class="items"><thead><tr><th>质检项</th><th>得分</th>'
            f'<th>证据 / 复核</th></tr></thead><tbody>{"".join(items_html)}</tbody></table></div></div>'
            f'<div class="card" style="margin-top:16px"><h3>复核记录</h3><table class="history"><thead><tr>'
            f'<th>#</th><th>时间</th><th>质检项</th><th>操作</th><th>机器分</th><th>新分</th><th>意见</th>'
            f'<th>人员</th><th>运行</th></tr></thead><tbody>{hist}</tbody></table></div>')
    return layout(s.call_id, body, user, csrf, nonce, PLAYER_JS)


def calibration_page(rows: list[dict], names: dict[str, str], user: User, csrf: str) -> str:
    trs = "".join(f'<tr><td>{escape(names.get(r["item_id"], r["item_id"]))} <span class="muted">'
                  f'{escape(r["item_id"])}</span></td><td>{r["n_reviewed"]}</td><td>{100 * r["agreement"]:.0f}%</td>'
                  f'<td>{r["n_override"]}</td><td>{r["mean_abs_change"]:g}</td></tr>' for r in rows)
    return layout("校准", '<h2>人机一致性（按质检项）</h2><table><thead><tr><th>质检项</th><th>复核数</th>'
                  '<th>一致率</th><th>改判数</th><th>平均分差</th></tr></thead><tbody>' + trs
                  + '</tbody></table>', user, csrf)


def users_page(users: list[User], user: User, csrf: str, error: str = "") -> str:
    trs = "".join(f'<tr><td>{escape(u.username)}</td><td>{ROLE_ZH.get(u.role, u.role)}</td>'
                  f'<td>{escape(u.agent_id or "")}</td></tr>' for u in users)
    roles = "".join(f'<option value="{r}">{ROLE_ZH[r]}</option>' for r in ROLE_ZH)
    err = f'<p class="err">{escape(error)}</p>' if error else ""
    return layout("用户", f'<h2>用户</h2>{err}<table><thead><tr><th>用户名</th><th>角色</th><th>坐席ID</th></tr>'
                  f'</thead><tbody>{trs}</tbody></table><h3>新增用户</h3><form class="filters" method="post" '
                  f'action="/users"><input type="hidden" name="csrf" value="{escape(csrf)}"><label>用户名'
                  f'<input name="username" required></label><label>密码<input name="password" type="password" '
                  f'required minlength="8"></label><label>角色<select name="role">{roles}</select></label>'
                  f'<label>坐席ID<input name="agent_id"></label><button>添加</button></form>', user, csrf)


def export_page(agents: list[str], teams: list[str], user: User, csrf: str) -> str:
    ag = "".join(f'<option value="{escape(a)}">{escape(a)}</option>' for a in agents)
    tm = "".join(f'<option value="{escape(t)}">{escape(t)}</option>' for t in teams)
    return layout("辅导导出", f'<h2>辅导案例导出</h2><p>按坐席下载低分会话的未通过项（证据原话与时间点）。'
                  f'批量导出请用命令 <code>qc-pipeline export</code>。</p><form class="filters" method="get" '
                  f'action="/export/download"><label>坐席<select name="agent" required>{ag}</select></label>'
                  f'<label>班组<select name="team"><option value="">全部</option>{tm}</select></label>'
                  f'<label>低于<input name="below" type="number" value="60" style="width:5em"></label>'
                  f'<label>开始日期<input type="date" name="since"></label>'
                  f'<label>结束日期<input type="date" name="until"></label>'
                  f'<label>格式<select name="format"><option>csv</option><option>xlsx</option></select></label>'
                  f'<button>下载</button></form>', user, csrf)
