"""Engines side by side on the same audio, in one run: bare faster-whisper, local 1 worker, local N
workers, Ray N workers (and optionally Ray split layout).

For each: wall time, RTF (wall / call audio s), throughput (audio hours per hour), per-stage RTF
(summed stage seconds / audio s, from the run summary), ratio to bare, ray/local overhead and peak
RSS per worker (local workers: VmHWM of the spawned children, polled from /proc; Ray actors report
their own VmHWM).  Wall times include worker start-up and model loading (what a nightly run pays).
It also checks that the engines wrote the same results (every Parquet column but run ids, times
and stage seconds) and prints the verdict: the local and Ray runs must be equal.  A last run gives the
stereo calls alone to N local workers: their peak RSS is what a worker costs when no call needs the
diarizer.  The summary table (issue 18's format) comes last: audio hours per hour, wall time relative to
bare faster-whisper, peak RSS per worker, and the 1 -> N worker scaling; for local runs also the cores
busy (CPU seconds of the driver and its workers / wall), which says whether N workers were short of CPU
or waiting.

Bare faster-whisper uses the AsrStage's model and decoding options over each whole channel, with
faster-whisper's own VAD standing in for the segment stage.

Default inputs: samples/calls/manifest.csv and ../shared/data/synthetic_calls (if present);
``--copies`` links (or copies) each audio file under distinct names for a longer run.  Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import WorkerPeaks, bench_bare, fmt, phase, rtf  # noqa: E402  (same folder)

from qc_pipeline.config import PipelineConfig, load_config  # noqa: E402
from qc_pipeline.executors import LocalExecutor  # noqa: E402
from qc_pipeline.inputs import discover  # noqa: E402
from qc_pipeline.runner import RunStats, run_batch  # noqa: E402
from qc_pipeline.testing import link_or_copy  # noqa: E402

# Spawned workers import this script again (as __mp_main__): keep its top-level imports to what
# ``qc-pipeline run``'s workers import too (no pyarrow here: ``read_table`` is imported where used), so the
# workers' peak RSS is the real one.

log = logging.getLogger("bench_engines")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUTS = (REPO / "samples/calls/manifest.csv", REPO.parent / "shared/data/synthetic_calls")


def audio_paths(inputs: list[str]) -> list[str]:
    return [s.path for s in discover(inputs).sources if s.kind == "audio" and s.path and s.input_error is None]


def copy_inputs(tmp: Path, paths: list[str], copies: int) -> list[str]:
    """``copies`` of every audio file under distinct names (distinct call_ids), hard-linked where possible."""
    (folder := tmp / "in").mkdir()
    for i, p in enumerate(paths):
        for c in range(copies):
            link_or_copy(Path(p).resolve(), folder / f"{i:03d}_{Path(p).stem}_{c:02d}{Path(p).suffix}")
    return [str(folder)]


def stereo_only(paths: list[str]) -> list[str]:
    """The two-channel files among ``paths`` (read from the container header, nothing decoded)."""
    import av

    def channels(path: str) -> int:
        with av.open(path) as container:
            return container.streams.audio[0].codec_context.channels

    return [p for p in paths if channels(p) == 2]


def run_engine(inputs: list[str], out: Path, cfg: PipelineConfig, engine: str, workers: int,
               split: Optional[bool] = None) -> tuple[RunStats, list[float]]:
    """One engine run; returns its stats and the peak RSS (MiB) of each of its workers."""
    if engine == "local":
        monitor = WorkerPeaks()  # every local call runs in a worker process, 1 worker included
        stats = run_batch(inputs, str(out), cfg, executor=LocalExecutor(cfg, workers))
        return stats, monitor.stop()
    from qc_pipeline.executors.ray import RayExecutor, RayOptions

    ex = RayExecutor(cfg, workers, options=RayOptions(split=split))
    stats = run_batch(inputs, str(out), cfg, executor=ex)
    log.info("ray layout: %s; worker peaks %s", ex.layout, ex.worker_peaks_mib)
    return stats, [v for peaks in ex.worker_peaks_mib.values() for v in peaks]


VOLATILE = {"run_id", "processed_at", "stage_seconds"}
KEYS = {"sessions": ("call_id",), "utterances": ("call_id", "turn_index"), "scores": ("call_id",),
        "item_results": ("call_id", "item_id")}


def content(out: Path) -> dict:
    """Every table's rows without the columns that differ run to run, in a fixed order."""
    from qc_pipeline.sinks import read_table

    tables = {}
    for name, keys in KEYS.items():
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_table(out, name).to_pylist()]
        tables[name] = sorted(rows, key=lambda r, ks=keys: tuple(str(r[k]) for k in ks))
    return tables


def text_change(out_a: Path, out_b: Path) -> str:
    """How far run ``b``'s transcripts are from run ``a``'s: calls whose text differs, and the character error
    rate of ``b`` against ``a`` over all calls (eval_asr's transcripts and ``metrics.cer``).  On a GPU, float16
    batches of other compositions (another worker count, cross-call batching) decode slightly differently, so
    unequal tables need this size."""
    from eval_asr import transcripts  # here, not at the top: spawned workers import this script again

    from qc_pipeline.metrics import cer

    ta, tb = ({c: t["all"] for c, t in transcripts(out).items()} for out in (out_a, out_b))
    calls = sorted(set(ta) | set(tb))
    errors = chars = 0
    for c in calls:
        e, n = cer(ta.get(c, ""), tb.get(c, ""))
        errors, chars = errors + e, chars + n
    changed = sum(ta.get(c) != tb.get(c) for c in calls)
    return f"{changed}/{len(calls)} calls' text differ, {errors}/{chars} characters ({errors / max(chars, 1):.2%})"


@dataclass(frozen=True)
class Run:
    """One engine run of the bench: its row name, its name in the summary table, and how it compares."""
    engine: str
    workers: int
    mode: str
    label: str
    cfg: PipelineConfig
    inputs: list[str]
    split: Optional[bool] = None
    compare: bool = True       # results compared with local 1 worker's (same calls, same config)
    comparable: bool = True    # wall comparable with bare faster-whisper's (same calls)


def print_summary(rows: list[dict], w: int) -> None:
    """The issue's table: audio hours per hour, wall relative to bare faster-whisper, peak RSS per worker;
    cores busy (driver + local workers' CPU seconds / wall) and the 1 -> N scaling under it."""
    print("\n| mode | audio h per h | wall vs bare faster-whisper | peak RSS per worker | cores busy |")
    print("|---|---|---|---|---|")
    for r in rows:
        label = r["label"]
        rss = " + ".join(f"{v:.0f}" for v in r["peak_rss_mib"] if v is not None)
        print(f"| {label} | {fmt(r['audio_h_per_h'], '.1f')} | {fmt(r['rtf_vs_bare'], '.2f')} | {rss} MiB "
              f"| {fmt(r.get('cores_busy'), '.2f')} |")
    by = {r["mode"]: r for r in rows}
    one, many = by.get("local 1 worker"), by.get(f"local {w} workers")
    if one and many and one["rtf"] and many["rtf"]:
        print(f"\nscaling 1 -> {w} workers: {one['rtf'] / many['rtf']:.2f}x the throughput "
              f"({fmt(one.get('cores_busy'), '.2f')} -> {fmt(many.get('cores_busy'), '.2f')} cores busy)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", nargs="+", help="audio files/folders/manifests (default: sample calls + "
                                                "../shared/data/synthetic_calls)")
    ap.add_argument("--copies", type=int, default=1, help="copies of each audio file (default 1)")
    ap.add_argument("--limit", type=int, help="use only the first N audio files (smoke runs)")
    ap.add_argument("--workers", type=int, default=2, help="workers for the parallel runs (default 2)")
    ap.add_argument("--ray-split", action="store_true", help="also run Ray with the split (front/asr/back) layout")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs (also skipped, with a warning, where "
                                                          "ray is not installed)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--batch-size", type=int, default=8,
                    help="also run bare faster-whisper batched and the pipeline with asr.batch_size=N (0 = skip)")
    args = ap.parse_args()
    if args.workers < 2:
        ap.error("--workers must be at least 2 (1 worker is always measured)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    ray = not args.no_ray and importlib.util.find_spec("ray") is not None
    if not ray and not args.no_ray:
        log.warning("ray is not installed: no Ray runs (pip install -e '.[ray]')")

    cfg = load_config(None, ("run.progress=false", *args.set))
    inputs = args.inputs or [str(p) for p in DEFAULT_INPUTS if p.exists()]
    paths = audio_paths(inputs)[: args.limit]
    if not paths:
        raise SystemExit(f"no readable audio under {inputs}")
    tmp, w = Path(tempfile.mkdtemp(prefix="qc-bench-engines-")), args.workers
    inputs = copy_inputs(tmp, paths, args.copies)
    paths = audio_paths(inputs)
    log.info("%d audio calls; scratch folder %s", len(paths), tmp)

    bare, rss_bare, busy_bare, _ = phase("bare faster-whisper", bench_bare, paths, cfg)
    b = args.batch_size
    runs = [Run("local", 1, "local 1 worker", "pipeline, 1 worker", cfg, inputs)]
    if b > 0:  # another config: not compared for equal results
        runs.append(Run("local", 1, f"local 1 worker batched (b={b})", f"pipeline, 1 worker, batched {b}",
                        load_config(None, ("run.progress=false", *args.set, f"asr.batch_size={b}")), inputs,
                        compare=False))
    runs.append(Run("local", w, f"local {w} workers", f"pipeline, {w} workers", cfg, inputs))
    if ray:
        runs.append(Run("ray", w, f"ray {w} workers", f"Ray, {w} workers", cfg, inputs, split=False))
    if ray and args.ray_split:
        runs.append(Run("ray", w, f"ray {w} workers (split)", f"Ray, {w} workers, split layout", cfg, inputs,
                        split=True))
    stereo = stereo_only(paths)
    if stereo and len(stereo) < len(paths):  # other calls than bare's: neither compared for results nor for wall
        runs.append(Run("local", w, f"local {w} workers stereo only", f"pipeline, {w} workers, stereo calls only",
                        cfg, stereo, compare=False, comparable=False))
    rows = [{"mode": "bare faster-whisper", "label": "bare faster-whisper, sequential", "comparable": True,
             "wall_s": bare["wall_s"], "rtf": bare["rtf"], "stage_rtf": bare["stage_rtf"],
             "peak_rss_mib": [rss_bare], "other_cores": busy_bare, "ok": len(paths), "failed": {}}]
    if b > 0:
        bb, rss_bb, busy_bb, _ = phase("bare batched", bench_bare, paths, cfg, b)
        rows.append({"mode": f"bare batched (b={b})", "label": f"bare faster-whisper, batched {b}",
                     "comparable": True, "wall_s": bb["wall_s"], "rtf": bb["rtf"], "stage_rtf": bb["stage_rtf"],
                     "peak_rss_mib": [rss_bb], "other_cores": busy_bb, "ok": len(paths), "failed": {}})
    outs: dict[str, Path] = {}
    for i, run in enumerate(runs):
        (stats, peaks), rss_main, busy, own = phase(run.mode, run_engine, run.inputs, tmp / f"out{i}", run.cfg,
                                                    run.engine, run.workers, run.split)
        if run.compare:
            outs[run.mode] = tmp / f"out{i}"
        rows.append({"mode": run.mode, "label": run.label, "comparable": run.comparable, "wall_s": stats.wall_s,
                     "rtf": stats.rtf, "ok": stats.ok, "failed": dict(stats.failed), "audio_s": stats.audio_s,
                     "stage_rtf": {k: rtf(v, stats.audio_s) for k, v in stats.stage_s.items()},
                     "peak_rss_mib": peaks or [rss_main], "main_rss_mib": rss_main, "other_cores": busy,
                     "cores_busy": own if run.engine == "local" else None})  # Ray actors are not our children
    audio_s = bare["audio_s"]
    for r in rows:
        r["audio_h_per_h"] = 1 / r["rtf"] if r["rtf"] else None
        r["rtf_vs_bare"] = r["rtf"] / bare["rtf"] if r["comparable"] and r["rtf"] and bare["rtf"] else None
    by = {r["mode"]: r for r in rows}
    local_1, local_n, ray_n = by["local 1 worker"], by.get(f"local {w} workers"), by.get(f"ray {w} workers")
    ratios = {
        f"local_{w}_over_1_throughput": (local_1["rtf"] / local_n["rtf"]) if local_n and local_n["rtf"] else None,
        f"ray_over_local_{w}_wall": (ray_n["wall_s"] / local_n["wall_s"]) if ray_n and local_n else None,
    }

    same = content(outs["local 1 worker"])
    equal = {name: content(path) == same for name, path in outs.items() if name != "local 1 worker"}

    stages = sorted({k for r in rows for k in r["stage_rtf"]})
    print(f"\n{len(paths)} calls, {audio_s:.1f} s call audio ({len(stereo)} stereo); bare model load "
          f"{bare['model_load_s']:.2f} s (not in its wall); engine walls include worker start-up and model loads\n")
    print(f"{'mode':<30}{'wall s':>8}{'RTF':>8}{'audio h/h':>10}{'x bare':>8}"
          + "".join(f"{s[:7]:>8}" for s in stages) + "  peak RSS MiB per worker")
    for r in rows:
        print(f"{r['mode']:<30}{r['wall_s']:>8.2f}{fmt(r['rtf']):>8}{fmt(r['audio_h_per_h'], '.1f'):>10}"
              f"{fmt(r['rtf_vs_bare'], '.2f'):>8}" + "".join(f"{fmt(r['stage_rtf'].get(s)):>8}" for s in stages)
              + "  " + ", ".join(f"{v:.0f}" for v in r["peak_rss_mib"] if v is not None))
    print("\nper-stage columns: stage seconds summed over workers / audio s (CPU-time-like; bare: decode, asr)")
    print(", ".join(f"{k} = {fmt(v, '.3f')}" for k, v in ratios.items()))
    print("same results as local 1 worker: " + ", ".join(f"{k}: {'EQUAL' if v else 'DIFFERENT'}"
                                                          for k, v in equal.items()))
    print("CPU cores used by other processes: " + ", ".join(f"{r['mode']} {r['other_cores']:.2f}" for r in rows)
          + " (above ~0.1 means contended timings)")
    bad = {r["mode"]: r["failed"] for r in rows if r["failed"]}
    if bad:
        print(f"FAILED calls: {bad}")
    if not all(equal.values()):
        print("ENGINES DISAGREE: compare the tables under the scratch folder. Transcripts against local 1 worker: "
              + "; ".join(f"{k}: {text_change(outs['local 1 worker'], outs[k])}" for k, v in equal.items() if not v))
    print_summary(rows, w)
    res = {"calls": len(paths), "audio_s": audio_s, "workers": w, "bare": bare, "rows": rows, "ratios": ratios,
           "equal_to_local_1": equal, "scratch": str(tmp)}
    print(json.dumps(json.loads(json.dumps(res), parse_float=lambda x: round(float(x), 4)), ensure_ascii=False))


if __name__ == "__main__":
    main()
