"""Test helpers for the review app: real results sets (the real pipeline on chats / the sample call),
logged-in Starlette test clients, and uvicorn in a thread for the browser tests.  No network beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from qc_pipeline.web.db import ReviewDB

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("QC_SHARED_DATA", REPO.parent / "shared" / "data"))
PASSWORD = "correct-horse-9"

# Hand-written dialogues (own text, no licence strings attached): a good one, and bad ones that fail items.
OWN_DIALOGUES = (
    ("good", [("agent", "您好，很高兴为您服务，请问有什么可以帮您？"), ("customer", "我的订单还没发货"),
              ("agent", "您是说订单还没有发货对吗？我帮您查询一下"), ("customer", "对的"),
              ("agent", "已经为您催促仓库，今天会安排发货"), ("customer", "好的谢谢"),
              ("agent", "请问还有其他问题吗？感谢您的来电，祝您生活愉快")]),
    ("rude", [("customer", "我的退款怎么还没到"), ("agent", "这是规定，你懂不懂"),
              ("customer", "什么破服务，我要投诉"), ("agent", "快点说，我就这态度"), ("customer", "垃圾")]),
    ("silent", [("customer", "在吗"), ("agent", "嗯"), ("customer", "我的快递丢了"), ("agent", "不知道"),
                ("customer", "太差了，不满意")]),
)
AGENTS = (("A1001", "billing"), ("A1002", "billing"), ("A2001", "logistics"))


def chat_lines(use_shared: bool = True, limit: int = 60) -> list[dict]:
    """Chat sessions for ``qc-pipeline run``: own dialogues over 3 agents and 4 weeks, plus real JDDC ones."""
    lines = []
    for week in range(4):
        for k, (name, turns) in enumerate(OWN_DIALOGUES):
            agent, team = AGENTS[(week + k) % len(AGENTS)]
            lines.append({"dialogue_id": f"own-{name}-w{week}", "agent_id": agent, "team": team,
                          "started_at": f"2026-10-{5 + 7 * week:02d}T{9 + k}:00:00+08:00",
                          "turns": [{"role": r, "text": t} for r, t in turns]})
    path = SHARED / "jddc_sample" / "dev.jsonl"
    if use_shared and path.is_file():
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if n >= limit:
                    break
                o = json.loads(line)
                agent, team = AGENTS[n % len(AGENTS)]
                lines.append({"dialogue_id": o["dialogue_id"], "agent_id": agent, "team": team,
                              "started_at": f"2026-10-{1 + n % 28:02d}T10:{n % 60:02d}:00+08:00",
                              "turns": [{"role": t["role"], "text": t["text"]} for t in o["turns"]]})
    return lines


def run_pipeline(inputs: list[str | Path], out: Path, timeout: float = 600) -> Path:
    cmd = [sys.executable, "-m", "qc_pipeline", "run", *map(str, inputs), "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out


def build_chat_results(tmp: Path, use_shared: bool = True) -> Path:
    src = tmp / "chats.jsonl"
    src.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in chat_lines(use_shared)), "utf-8")
    return run_pipeline([src], tmp / "results")


def build_audio_results(tmp: Path) -> Path:
    """The real pipeline on the stereo sample call (needs the embedded whisper model)."""
    calls = tmp / "calls"  # manifest paths must lie inside the manifest's folder
    calls.mkdir(exist_ok=True)
    shutil.copyfile(REPO / "samples" / "calls" / "stereo_call_8k.wav", calls / "stereo_call_8k.wav")
    manifest = calls / "manifest.csv"
    manifest.write_text("call_id,path,agent_id,team,queue,started_at,channel_layout\n"
                        "demo-stereo-001,stereo_call_8k.wav,A1001,billing,话费查询,"
                        "2026-11-20T09:15:00+08:00,agent_left\n", "utf-8")
    out = run_pipeline([manifest], tmp / "results")
    from qc_pipeline.sinks.parquet import read_table

    rows = [r for r in read_table(out, "sessions").to_pylist() if r["call_id"] == "demo-stereo-001"]
    s = rows[-1] if rows else None
    if s is None or s["status"] != "ok":
        detail = "" if s is None else f"{s['error_reason']}: {s['error_detail']}"
        raise RuntimeError(f"the sample call failed in the pipeline ({detail}); results in {out}")
    return out


# Calls with stored summaries for the call-reasons report: (call_id, agent, team, started_at, call_type, reason,
# resolved, over_duration_target).  Weeks 2026-W41, W42 and W44 (W43 empty); s05 is Sunday in UTC but Monday
# (W42) in Asia/Shanghai; s10 has no team.
SUMMARY_CALLS = (
    ("s01", "A1001", "billing", "2026-10-05T09:00:00+08:00", "咨询", "物流配送", True, False),
    ("s02", "A1001", "billing", "2026-10-06T10:00:00+08:00", "投诉", "物流配送", False, True),
    ("s03", "A1002", "billing", "2026-10-07T11:00:00+08:00", "咨询", "发票", None, None),
    ("s04", "A2001", "logistics", "2026-10-08T09:30:00+08:00", "投诉", "物流配送", False, True),
    ("s05", "A2001", "logistics", "2026-10-11T16:30:00+00:00", "咨询", "物流配送", True, False),
    ("s06", "A1001", "billing", "2026-10-12T09:00:00+08:00", "投诉", "退换货退款", None, True),
    ("s07", "A1002", "billing", "2026-10-13T14:00:00+08:00", "咨询", "物流配送", True, None),
    ("s08", "A2001", "logistics", "2026-10-14T15:00:00+08:00", "咨询", "物流配送", False, False),
    ("s09", "A2001", "logistics", "2026-10-15T15:00:00+08:00", "投诉", "退换货退款", False, True),
    ("s10", "A3001", None, "2026-10-16T10:00:00+08:00", "咨询", "发票", True, False),
    ("s11", "A1001", "billing", "2026-10-26T09:00:00+08:00", "咨询", "物流配送", None, False),
    ("s12", "A1002", "billing", "2026-10-27T09:00:00+08:00", "投诉", "物流配送", False, True),
    ("s13", "A1001", "billing", "2026-10-28T09:00:00+08:00", "建议", "发票", True, None),
    ("s14", "A2001", "logistics", "2026-10-29T09:00:00+08:00", "咨询", "退换货退款", True, False),
)
SUMMARY_FAILED = ("s15", "A1001", "billing", "2026-10-05T12:00:00+08:00")       # failed: no summary
SUMMARY_RERUN = ("s02", "办理", "退换货退款", True, False)                       # a later run of s02 changed it


def build_summary_results(out: Path) -> Path:
    """A small results folder written with the pipeline's own sink (:class:`ParquetSink`, 4 calls per part):
    SUMMARY_CALLS with their summaries and session flags, SUMMARY_FAILED, then a second run with SUMMARY_RERUN."""
    import datetime as dt

    from qc_pipeline.records import ROLE_AGENT, ROLE_CUSTOMER, CallRecord, CallSource, Utterance
    from qc_pipeline.sinks.parquet import ParquetSink
    from qc_pipeline.stages.summarize import Summary

    def record(cid, agent, team, started, call_type=None, reason=None, resolved=None, over=None) -> CallRecord:
        src = CallSource(call_id=cid, kind="chat", agent_id=agent, team=team,
                         started_at=dt.datetime.fromisoformat(started))
        utts = (Utterance(0, ROLE_CUSTOMER, -1, None, None, f"我想问一下{reason or ''}的问题"),
                Utterance(1, ROLE_AGENT, -1, None, None, "好的，我帮您查询"))
        rec = CallRecord(source=src, utterances=utts)
        if call_type is None:
            return rec.failed("decode_error", "test: failed before summarizing")
        target = None if over is None else 300.0
        rec = rec.replace(summary=Summary(
            call_type=call_type, call_type_source="keywords", reason=reason, reason_text=utts[0].text,
            reason_source="keywords", resolved=resolved, duration_target_s=target, over_duration_target=over,
            duration_s=None if over is None else target + (60 if over else -60)))
        return rec.with_flag("over_duration_target") if over else rec

    specs = {c[0]: c for c in SUMMARY_CALLS}
    for run, recs in (("20261101T000000-aaaaaa", [record(*c) for c in SUMMARY_CALLS] + [record(*SUMMARY_FAILED)]),
                      ("20261102T000000-bbbbbb", [record(*specs[SUMMARY_RERUN[0]][:4], *SUMMARY_RERUN[1:])])):
        sink = ParquetSink(out, run_id=run, config_hash="test", flush_every=4, run_date=dt.date(2026, 11, 1))
        sink.open()
        for rec in recs:
            sink.add(rec)
        sink.close()
    return out


def add_users(db_path: Path) -> ReviewDB:
    """rev, rev2 (reviewers), trainer, admin, ag1 (agent A1001), ag2 (agent A2001), all with PASSWORD."""
    db = ReviewDB(db_path)
    for name, role, agent in (("rev", "reviewer", None), ("rev2", "reviewer", None), ("trainer", "trainer", None), ("admin", "admin", None),
                              ("ag1", "agent", "A1001"), ("ag2", "agent", "A2001")):
        db.add_user(name, PASSWORD, role, agent)
    return db


class ServerThread:
    """``with ServerThread(app) as base_url:`` — the app under uvicorn on a free 127.0.0.1 port (browser tests)."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.server = uvicorn.Server(uvicorn.Config(app.asgi, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def client(app, user: Optional[str] = None, password: str = PASSWORD, address: str = "testclient"):
    """A Starlette TestClient (own cookie jar, client ``address``), logged in as ``user``; ``.csrf`` holds
    the session's token."""
    from starlette.testclient import TestClient

    c = TestClient(app.asgi, follow_redirects=False, client=(address, 50000))
    c.csrf = None
    if user:
        status = login(c, user, password)
        if status != 303:
            raise AssertionError(f"login of {user} answered {status}")
    return c


def form_token(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def login(c, user: str, password: str = PASSWORD) -> int:
    token = form_token(c.get("/login").text)
    r = c.post("/login", data={"csrf": token, "username": user, "password": password})
    if r.status_code == 303:
        c.csrf = form_token(c.get("/sessions").text)  # every role may list sessions; the page carries the token
    return r.status_code
