"""Review app at scale: a synthetic results folder in the pipeline's real layout, then the app over HTTP.

    python scripts/bench_review_app.py [--sessions 100000] [--data /tmp/qc-bench-100k] [--requests 60]

The dataset is written by qc_pipeline's own sink (``ParquetSink``: ``--calls-per-part``, default 8 = the worst case, many small files, sessions /
utterances / scores / item_results / summaries, hive-partitioned by run date, the explicit schemas of
``qc_pipeline.schema``) from synthetic ``CallRecord`` s, one nightly run per day; it is kept and reused
(delete the folder to rebuild).  fsync is skipped while writing it: bench data needs no durability.

The app runs as ``qc-pipeline serve`` in a child process (uvicorn, real HTTP).  Reported:
start-up until the first queue page answers (cold: no read-model file yet; warm: restart with it),
p50/p95 of queue / search (call id, agent, text) / sort / session page / score and call-reasons reports / a
reason+week drill-down list, the same while a night's new
parts arrive (max latency = the longest any request was blocked), and the server's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qc_pipeline.records import CallRecord, CallSource, Utterance  # noqa: E402

AGENT_LINES = ("您好，很高兴为您服务，请问有什么可以帮您？", "您是说订单还没有发货对吗？我帮您查询一下",
               "已经为您催促仓库，今天会安排发货", "请问还有其他问题吗？感谢您的来电，祝您生活愉快",
               "这是规定，你懂不懂", "麻烦您提供一下手机号码", "好的，已经为您登记退款申请")
CUSTOMER_LINES = ("我的订单还没发货", "对的", "好的谢谢", "什么破服务，我要投诉", "我的快递丢了",
                  "退款怎么还没到账", "我要打12315")
ITEMS = (("greeting", "开场问候", 10), ("verify", "身份核实", 10), ("restate", "复述确认", 10),
         ("solution", "解决方案", 20), ("attitude", "服务态度", 15), ("closing", "结束语", 10),
         ("pii", "隐私保护", 10), ("forbidden", "禁语", 15))
REASONS = ("物流配送", "退换货退款", "账户支付", "发票", "商品质量", "套餐业务", "其他")
CALL_TYPES = ("咨询", "办理", "投诉", "建议")
N_UTTERANCES = 20
PER_DAY = 3000


def _record(rng: random.Random, n: int, day: dt.date):
    """One synthetic scored and summarized call: 20 utterances, 8 items with evidence, flags as the pipeline
    stores them, a summaries row (call type, reason, resolved, over the duration target)."""
    from qc_pipeline.scoring.context import Hit
    from qc_pipeline.scoring.engine import ItemResult, SessionScore
    from qc_pipeline.stages.summarize import Summary

    agent = f"A{1000 + n % 400}"
    team = f"team{(n % 400) // 20:02d}"
    call_id = f"call-{day:%Y%m%d}-{n:07d}"
    t, utts = 0.0, []
    for i in range(N_UTTERANCES):
        role = "agent" if i % 2 == 0 else "customer"
        text = rng.choice(AGENT_LINES if role == "agent" else CUSTOMER_LINES)
        if i == 3:
            text += f"，订单号 {rng.randrange(10 ** 9):09d}"
        dur = 2 + rng.random() * 4
        utts.append(Utterance(turn_index=i, role=role, channel=0 if role == "agent" else 1, start=round(t, 2),
                              end=round(t + dur, 2), text=text, speaker=role,
                              emotion_index=round(30 + rng.random() * 70, 1)))
        t += dur + 0.5
    items, total, maxp = [], 0.0, 0.0
    veto = rng.random() < 0.02
    for item_id, name, mx in ITEMS:
        ok = rng.random() < 0.8
        pts = float(mx if ok else rng.choice((0, mx // 2)))
        ti = rng.randrange(N_UTTERANCES)
        ev = (Hit(f"{item_id}.kw", ti, utts[ti].role, utts[ti].start, utts[ti].end,
                  f"关键词 | {utts[ti].text}"),) if ok or rng.random() < 0.5 else ()
        vetoed = veto and item_id == "forbidden"
        items.append(ItemResult(item_id, name, "agent", "graded", float(mx), pts, True, ok, None, 0, vetoed, ev))
        total += pts
        maxp += mx
    total = 0.0 if veto else round(100 * total / maxp, 1)
    flags = [f"{i.item_id}_miss" for i in items if i.points < i.max_points and i.item_id in ("pii", "forbidden")]
    if veto:
        flags.append("veto")
    if total < 60:
        flags.append("low_score")
    cust = round(30 + rng.random() * 70, 1)
    if cust < 60:
        flags.append("customer_emotion_low")
    score = SessionScore("default", "1", total, "A" if total >= 90 else "B" if total >= 75 else "C" if total >= 60
                         else "D", total >= 60, veto, ("forbidden",) if veto else (), tuple(flags), tuple(items))
    src = CallSource(call_id=call_id, kind="audio", path=f"/data/calls/{day}/{call_id}.wav", agent_id=agent,
                     team=team, queue="话费查询",
                     started_at=dt.datetime.fromisoformat(f"{day}T{8 + n % 12:02d}:{n % 60:02d}:00+08:00"))
    session_flags = ("low_role_confidence",) if rng.random() < 0.05 else ()
    over = t > 90.0
    summary = Summary(call_type=rng.choice(CALL_TYPES), call_type_source="keywords", reason=rng.choice(REASONS),
                      reason_text=utts[1].text, reason_source="keywords", resolved=rng.choice((True, False, None)),
                      duration_s=round(t, 1), duration_target_s=90.0, over_duration_target=over)
    if over:
        session_flags += ("over_duration_target",)
    return CallRecord(source=src, utterances=tuple(utts), flags=session_flags, role_confidence=0.9,
                      score=score, customer_emotion_index=cust, timings=(("asr", 1.0),), summary=summary)


def _write_days(args: tuple[str, list[tuple[str, int, int]], int]) -> int:
    """Write whole nights (one ParquetSink = one run per day) with the pipeline's sink, fsync skipped.

    The sinks are not ``open()``ed here: two processes write at once and a sink's start-up clean-up would
    delete the other's in-flight parts; build_dataset opens one sink up front instead."""
    from qc_pipeline.sinks import parquet as pmod

    out, days, per_part = args
    pmod.os.fsync = lambda fd: None  # the module's os: bench data need no durability
    pmod.fsync_dir = lambda folder: None
    n_written = 0
    for day_s, first, count in days:
        day = dt.date.fromisoformat(day_s)
        rng = random.Random(first)
        w = pmod.ParquetSink(out, run_id=f"{day:%Y%m%d}T020000-bench", config_hash="bench", run_date=day,
                             flush_every=per_part, flush_interval_s=float("inf"))
        for n in range(first, first + count):
            w.add(_record(rng, n, day))
        w.close()
        n_written += count
    return n_written


def plan_days(n_sessions: int, start: dt.date) -> list[tuple[str, int, int]]:
    days, first, d = [], 0, start
    while first < n_sessions:
        count = min(PER_DAY, n_sessions - first)
        days.append((d.isoformat(), first, count))
        first += count
        d += dt.timedelta(days=1)
    return days


def build_dataset(out: Path, n_sessions: int, per_part: int, workers: int = 2) -> float:
    days = plan_days(n_sessions, dt.date(2026, 1, 1))
    t0 = time.perf_counter()
    from qc_pipeline.sinks.parquet import ParquetSink

    ParquetSink(out, run_id="prepare", config_hash="bench").open()  # the clean-up of an interrupted build, once
    chunks = [days[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as ex:
        done = sum(ex.map(_write_days, [(str(out), c, per_part) for c in chunks]))
    (out / ".bench-complete").write_text(str(done))
    return time.perf_counter() - t0


# -- HTTP driving -------------------------------------------------------------------------------------
class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""
        self.csrf = ""

    def req(self, method: str, path: str, body: dict | None = None, timeout: float = 60) -> tuple[int, bytes, float]:
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        data = None
        if body is not None:
            data = urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.perf_counter()
        con.request(method, path, body=data, headers=headers)
        resp = con.getresponse()
        payload = resp.read()
        dt_s = time.perf_counter() - t0
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie" and v.startswith("qc_session=") and "Max-Age=0" not in v:
                self.cookie = v.split(";", 1)[0]
            elif k.lower() == "set-cookie" and v.startswith("qc_login="):
                self.login_cookie = v.split(";", 1)[0]
        con.close()
        return resp.status, payload, dt_s

    def login(self, user: str, password: str) -> None:
        _s, page, _t = self.req("GET", "/login")
        token = page.decode().split('name="csrf" value="', 1)[1].split('"', 1)[0]
        self.cookie = self.login_cookie
        status, _b, _t = self.req("POST", "/login", {"csrf": token, "username": user, "password": password})
        if status != 303:
            raise RuntimeError(f"login failed: {status}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(data: Path, db: Path, port: int) -> tuple[subprocess.Popen, float]:
    cmd = [sys.executable, "-m", "qc_pipeline", "serve", "--results", str(data), "--db", str(db),
           "--port", str(port), "--audio-root", str(data)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(db.parent / "serve.log", "ab"))
    h = Http(port)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}; see {db.parent / 'serve.log'}")
        try:
            h.login("bench", "qa-load-2026!")
            status, _b, _t = h.req("GET", "/api/queue")
            if status == 200:
                return proc, time.perf_counter() - t0
        except (ConnectionError, OSError):
            pass
        time.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] * 1000


def measure(h: Http, paths: list[str]) -> list[float]:
    out = []
    for p in paths:
        status, _b, t = h.req("GET", p)
        if status != 200:
            raise RuntimeError(f"{p}: HTTP {status}")
        out.append(t)
    return out


def workload(n: int, rng: random.Random, last_day: dt.date) -> dict[str, list[str]]:
    days = (last_day - dt.date(2026, 1, 1)).days
    return {
        "queue page 1": ["/queue"] * n,
        "queue deep page (keyset)": [],  # filled by following 'next' links
        "search call id": [f"/queue?q=call-2026010{1 + i % 9}" for i in range(n)],
        "search agent": [f"/sessions?q=A{1000 + rng.randrange(400)}" for _ in range(n)],
        "search text": [f"/sessions?q={rng.randrange(10 ** 4):04d}&text=1" for _ in range(n)],
        "sort by agent desc": ["/sessions?sort=agent&dir=desc"] * n,
        "filter team+flag": [f"/queue?team=team{rng.randrange(20):02d}&flag=low_score" for _ in range(n)],
        "session page": [],
        "score report (team, JSON)": ["/api/reports?level=team"] * n,
        "call reasons report (JSON)": ["/api/reports/reasons"] * n,
        "call reasons report (page)": ["/reports/reasons"] * n,
        "reason+week drill-down list": [f"/sessions?{urlencode({'reason': rng.choice(REASONS)})}"
                                        f"&week=2026-W{1 + rng.randrange(max(1, days // 7)):02d}" for _ in range(n)],
    }


def scale_check(data: Path, readmodel: Path, rounds: int = 7) -> None:
    """The basis of the 1M extrapolation: the read model's list queries on its 100k rows and on a copy
    grown to 1M (each call copied 9 times under new ids, transcripts too), side by side in one process."""
    import shutil

    from qc_pipeline.web.readmodel import ReadModel
    from qc_pipeline.web.views import ListQuery

    big = readmodel.with_name("readmodel-x10.duckdb")
    shutil.copy(readmodel, big)
    small_m, big_m = ReadModel(data, readmodel), ReadModel(data, big)
    con = big_m.con
    for k in range(1, 10):
        con.execute(f"INSERT INTO cur SELECT * REPLACE (call_id || '-x{k}' AS call_id, lower(call_id || '-x{k}') || "
                    f"chr(1) || lower(coalesce(agent_id, '')) AS skey) FROM cur WHERE NOT contains(call_id, '-x')")
        con.execute(f"INSERT INTO u_txt SELECT * REPLACE (call_id || '-x{k}' AS call_id) FROM u_txt "
                    f"WHERE NOT contains(call_id, '-x')")
    queries = {"queue page 1": ListQuery(flagged_only=True), "newest first": ListQuery(sort="time", desc=True),
               "search call id": ListQuery(q="call-2026010"), "search agent": ListQuery(q="a1234"),
               "sort by agent desc": ListQuery(sort="agent", desc=True),
               "filter team+flag": ListQuery(flagged_only=True, team="team03", flag="low_score"),
               "search text": ListQuery(text="1234")}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for name, q in queries.items():
            for label, m in (("100k", small_m), ("1M", big_m)):
                t0 = time.perf_counter()
                m.page(q)
                times.setdefault((name, label), []).append(time.perf_counter() - t0)
    print(f"\nread model in-process, {big_m.count()} vs {small_m.count()} calls (p50 of {rounds}):")
    print(f"{'query':22s} {'100k ms':>9s} {'1M ms':>9s} {'ratio':>6s}")
    for name in queries:
        a, b = pct(times[(name, "100k")], .5), pct(times[(name, "1M")], .5)
        print(f"{name:22s} {a:9.1f} {b:9.1f} {b / a:6.1f}")
    big_m.close()
    big.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default /tmp/qc-bench-<n>)")
    ap.add_argument("--requests", type=int, default=60, help="requests per kind")
    ap.add_argument("--night", type=int, default=PER_DAY, help="sessions of the night that arrives during the run")
    ap.add_argument("--calls-per-part", type=int, default=8,
                    help="calls per Parquet part (8 = the old flush_every, many small files; the pipeline now "
                         "defaults to output.flush_every 500 or output.flush_interval_s)")
    ap.add_argument("--x10", action="store_true", help="also time the list queries on the read model grown to 10x")
    args = ap.parse_args()
    data = args.data or Path(tempfile.gettempdir()) / f"qc-bench-{args.sessions}-{args.calls_per_part}-sum"
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1/5 min), cores {os.cpu_count()}")
    if not (data / ".bench-complete").exists():
        print(f"building {args.sessions} sessions in {data} ...", flush=True)
        took = build_dataset(data, args.sessions, args.calls_per_part)
        n_files = sum(1 for _ in data.glob("*/run_date=*/part-*.parquet"))
        print(f"  built in {took:.1f} s: {n_files} part files")
    n_files = sum(1 for _ in data.glob("*/run_date=*/part-*.parquet"))
    print(f"dataset: {args.sessions} sessions, {n_files} part files in {data}")
    from qc_pipeline.web.db import ReviewDB

    work = Path(tempfile.mkdtemp(prefix="qc-bench-app-"))
    db_path = work / "reviews.sqlite"
    ReviewDB(db_path).add_user("bench", "qa-load-2026!", "admin")
    readmodel = db_path.with_name("readmodel.duckdb")
    port = _free_port()
    t0 = time.perf_counter()
    proc, cold = start_server(data, db_path, port)
    h = Http(port)
    h.login("bench", "qa-load-2026!")
    first_rows = complete = None
    while complete is None:
        st = json.loads(h.req("GET", "/api/status")[1])
        if first_rows is None and st["sessions"] > 0:
            first_rows = time.perf_counter() - t0
        if st["complete"]:
            complete = time.perf_counter() - t0
        time.sleep(0.2)
    print(f"cold start (no read model file yet): first page answered after {cold:.2f} s, first rows (newest day) "
          f"after {first_rows:.2f} s, all {n_files} files ingested after {complete:.1f} s")
    hwm_cold = vm_hwm_mb(proc.pid)
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    proc, warm = start_server(data, db_path, port)
    print(f"warm start (read model file {readmodel.stat().st_size / 2**20:.0f} MiB): first page after {warm:.2f} s")
    last_day = dt.date.fromisoformat(plan_days(args.sessions, dt.date(2026, 1, 1))[-1][0])
    night = last_day + dt.timedelta(days=1)
    try:
        h = Http(port)
        h.login("bench", "qa-load-2026!")
        rng = random.Random(7)
        work_paths = workload(args.requests, rng, last_day)
        status, body, _t = h.req("GET", "/api/queue")
        page = json.loads(body)
        ids = [s["call_id"] for s in page["sessions"]]
        work_paths["session page"] = ["/sessions/" + ids[i % len(ids)] for i in range(args.requests)]
        nxt, deep = "/api/queue", []
        for _ in range(args.requests):
            status, body, t = h.req("GET", nxt)
            deep.append(t)
            cur = json.loads(body).get("next")
            nxt = "/api/queue?" + urlencode({"after": cur}) if cur else "/api/queue"
        results = {"queue deep page (keyset)": deep}
        for name, paths in work_paths.items():
            if paths:
                measure(h, paths[:3])  # warm-up
                results[name] = measure(h, paths)
        print(f"\n{'request':32s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
        for name, ts in results.items():
            print(f"{name:32s} {pct(ts, .5):8.1f} {pct(ts, .95):8.1f} {max(ts) * 1000:8.1f}")
        # a night's new parts arrive while requests go on
        lat, stop = [], threading.Event()

        def poll() -> None:
            hh = Http(port)
            hh.cookie = h.cookie
            paths = work_paths["queue page 1"] + work_paths["search agent"] + work_paths["session page"]
            i = 0
            while not stop.is_set():
                lat.append(measure(hh, [paths[i % len(paths)]])[0])
                i += 1

        th = threading.Thread(target=poll)
        th.start()
        t0 = time.perf_counter()
        _write_days((str(data), [(night.isoformat(), 10 ** 7, args.night)], args.calls_per_part))
        wrote = time.perf_counter() - t0
        seen = None
        while time.perf_counter() - t0 < 300:
            status, body, _t = h.req("GET", "/api/sessions?" + urlencode({"q": f"call-{night:%Y%m%d}"}))
            if json.loads(body)["total"] >= args.night:
                seen = time.perf_counter() - t0
                break
            time.sleep(0.2)
        stop.set()
        th.join()
        n_parts = -(-args.night // args.calls_per_part)
        print(f"\nnight of {args.night} sessions ({n_parts} parts per table) written in {wrote:.1f} s; "
              f"all visible after {seen if seen is None else round(seen, 1)} s")
        print(f"requests during the refresh: n={len(lat)} p50 {pct(lat, .5):.1f} ms, p95 {pct(lat, .95):.1f} ms, "
              f"max (longest blocked) {max(lat) * 1000:.1f} ms")
        print(f"peak RSS (VmHWM) of the server: cold start {hwm_cold:.0f} MB, warm run incl. refresh "
              f"{vm_hwm_mb(proc.pid):.0f} MB")
        print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        # the night written into the reused dataset is removed again, so the next run starts the same
        for f in data.glob(f"*/run_date={night}/*"):
            f.unlink()
        for f in data.glob(f"*/run_date={night}"):
            f.rmdir()
    if args.x10:
        scale_check(data, readmodel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
