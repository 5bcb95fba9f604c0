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
