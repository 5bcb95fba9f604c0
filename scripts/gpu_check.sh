#!/usr/bin/env bash
# Issue 17's checks on a lent GPU machine, in one call (docs/gpu.md): the parts of scripts/gpu_stage.sh must
# already be in $PARTS there (default .gpu; /tmp/parts when sent one call each).  Unpacks them (the machine
# reaches no package index), then
#   1. the GPU path as installed (no cuBLAS 12 on a CUDA-13-only host), then with the cuBLAS the later steps
#      use (where no cuBLAS 12 is found, the host's cuBLAS 13 under the cuBLAS 12 name), and the CPU for the
#      same text;
#   2. scripts/bench_engines.py: bare faster-whisper sequential and batched vs the pipeline (local 1 and N
#      workers, Ray, Ray split), GPU utilisation and memory sampled by nvidia-smi meanwhile;
#   3. out-of-memory halving: another process holds all but ~1.5 GiB of the GPU while a batch of 64 is asked;
#   4. eval_asr --telephone on the GPU (CER next to the CPU figures in README);
#   5. a local workers sweep (qc-pipeline run on SWEEP_COPIES calls with each of SWEEP_WORKERS) with nvidia-smi;
#   6. Ray (the split layout a GPU cluster gets) with 1 and 4 ASR actors per GPU (run.ray_actors_per_gpu).
# STEPS="smoke oom sweep" runs a subset, in that order.  The machine setup above them always runs.
# Everything goes to $OUT (run.log, bench.log, smi.csv, hog.log, oom.log, eval_asr.json, sweep.log, smi_sweep.csv).
set -u
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
PY=${PY:-python3}; PARTS=${PARTS:-.gpu}
COPIES=${COPIES:-32}; WORKERS=${WORKERS:-4}; BATCH=${BATCH:-16}
SWEEP_COPIES=${SWEEP_COPIES:-128}; SWEEP_WORKERS=${SWEEP_WORKERS:-4 8 12}
step() { echo; echo "== $(date +%T) $*"; }
t0=$(date +%s)

step "unpack the staged parts"
rm -rf /tmp/stage /tmp/ray /tmp/site /tmp/qc-bench-engines-*
cat "$PARTS"/base.part* | tar -x -C /tmp || { echo "staged parts missing or incomplete:"; ls -l "$PARTS"; exit 1; }
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/stage/whl/*.whl \
    $(ls "$PARTS"/*.whl 2>/dev/null) || exit 1
if cat "$PARTS"/ray.part* 2>/dev/null | tar -x -C /tmp 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/ray/whl/*.whl \
        || echo "ray did not install: no Ray runs"
else
    echo "ray parts missing or incomplete: no Ray runs"
fi
cp -r /tmp/stage/jieba /tmp/site/
rm -rf models/whisper-base && mkdir -p models && cp -r /tmp/stage/whisper-base models/
export PYTHONPATH=$PWD:/tmp/site QC_SHARED_DATA=/tmp/stage/shared

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv
echo "cores $(nproc)"; free -g | head -2
$PY - <<'PYEOF'
import sys, ctranslate2, faster_whisper, torch
print("python", sys.version.split()[0], "ctranslate2", ctranslate2.__version__, "faster-whisper", faster_whisper.__version__,
      "torch", torch.__version__, "(CUDA", torch.version.cuda, ")")
print("CTranslate2 sees", ctranslate2.get_cuda_device_count(), "GPU(s); compute types",
      sorted(ctranslate2.get_supported_compute_types("cuda")))
PYEOF
LIBS=$(timeout 30 find /opt /usr -name 'libcublas.so.1*' -o -name 'libcudnn.so.9*' 2>/dev/null || true)
head <<<"$LIBS"

# the host's cuBLAS 13 under the cuBLAS 12 name CTranslate2 opens (symlink + LD_LIBRARY_PATH), for every step;
# where a cuBLAS 12 is found (the [gpu] wheel), nothing is linked and that is what runs
INSTALLED_LD=${LD_LIBRARY_PATH:-}
if ! $PY -c "import sys; from qc_pipeline.gpu import preload_cuda12_libs as p, cublas_loadable as c; p(); sys.exit(not c())"; then
    CUBLAS13=$(grep -m1 '/libcublas\.so\.13$' <<<"$LIBS" || true)   # from the search above
    echo "no cuBLAS 12; cuBLAS 13 stands in: ${CUBLAS13:-none found}"
    if [ -n "$CUBLAS13" ]; then
        mkdir -p /tmp/compat && ln -sf "$CUBLAS13" /tmp/compat/libcublas.so.12
        export LD_LIBRARY_PATH=/tmp/compat:$(dirname "$CUBLAS13")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
fi

copies() {  # copies DIR N: a fresh DIR holding N copies of the stereo sample call
rm -rf "$1" && mkdir -p "$1"
for i in $(seq -w "$2"); do cp samples/calls/stereo_call_8k.wav "$1/c$i.wav"; done
}

smi() {  # smi FILE MS: GPU utilisation and memory into FILE every MS ms, in the background (pid in $SMI)
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms "$2" > "$1" &
SMI=$!
}

smoke() {
step "1a. GPU path as installed: auto (only where a stand-in is linked: otherwise 1b is the same run), then cuda"
if [ -n "${CUBLAS13:-}" ]; then LD_LIBRARY_PATH=$INSTALLED_LD timeout 120 $PY scripts/gpu_smoke.py; fi
LD_LIBRARY_PATH=$INSTALLED_LD timeout 60 $PY scripts/gpu_smoke.py --set asr.device=cuda
step "1b. with the cuBLAS the later steps use"
timeout 120 $PY scripts/gpu_smoke.py || { echo "no working GPU path: stopping"; exit 1; }
timeout 120 $PY scripts/gpu_smoke.py --set asr.device=cpu
}

bench() {
step "2. bench_engines on the GPU: $COPIES copies, $WORKERS workers, batch $BATCH"
smi "$OUT/smi.csv" 500
timeout "${BENCH_S:-330}" $PY scripts/bench_engines.py --inputs samples/calls/stereo_call_8k.wav --copies "$COPIES" \
    --workers "$WORKERS" --batch-size "$BATCH" --ray-split --set asr.device=cuda --set diarization.backend=none \
    > "$OUT/bench.log" 2>&1
echo "bench exit $?"
kill $SMI
grep -v '^{' "$OUT/bench.log" | tail -45
}

oom() {
step "3. out-of-memory halving: all but ~1.5 GiB of the GPU held by another process, batch 64 asked"
$PY - > "$OUT/hog.log" 2>&1 <<'PYEOF' &
import time, torch
free, _ = torch.cuda.mem_get_info()
hold = torch.empty(free - int(1.5 * 2**30), dtype=torch.uint8, device="cuda")
print("holding", round(hold.numel() / 2**30, 1), "GiB; free", round(torch.cuda.mem_get_info()[0] / 2**30, 2), "GiB",
      flush=True)
time.sleep(600)
PYEOF
hog=$!
for _ in $(seq 60); do grep -q holding "$OUT/hog.log" && break; sleep 1; done
cat "$OUT/hog.log"
rm -rf /tmp/oom-out && copies /tmp/oom-in 8
timeout 150 $PY -m qc_pipeline run /tmp/oom-in --out /tmp/oom-out --workers 1 --no-progress --set asr.device=cuda \
    --set asr.batch_size=64 --set run.calls_per_task=8 --set diarization.backend=none > "$OUT/oom.log" 2>&1
echo "run exit $?"
kill $hog
grep -iE "memory|batch_size|failed|error" "$OUT/oom.log" | head -20
$PY -c "
import collections
from qc_pipeline.sinks import read_table
rows = read_table('/tmp/oom-out', 'sessions').to_pylist()
print(collections.Counter((r['status'], r.get('error_reason')) for r in rows))"
}

evalasr() {
step "4. eval_asr --telephone on the GPU"
timeout "${EVAL_S:-200}" $PY scripts/eval_asr.py --telephone --workers 4 --set asr.device=cuda --set diarization.backend=none \
    --json "$OUT/eval_asr.json" 2>&1 | tail -30
}

sweep() {
step "5. local workers sweep: $((SWEEP_COPIES)) copies of the stereo sample, workers $SWEEP_WORKERS"
copies /tmp/sweep-in "$SWEEP_COPIES"
smi "$OUT/smi_sweep.csv" 250
for w in $SWEEP_WORKERS; do
    echo "== $(date +%T.%N) workers $w" | tee -a "$OUT/sweep.log"
    rm -rf /tmp/sweep-out
    timeout 150 $PY -m qc_pipeline run /tmp/sweep-in --out /tmp/sweep-out --workers "$w" --no-progress \
        --set asr.device=cuda --set diarization.backend=none 2>&1 | grep -E "audio:|calls:" | tee -a "$OUT/sweep.log"
done
echo "== $(date +%T.%N) end" | tee -a "$OUT/sweep.log"
kill $SMI
}

raygpu() {
step "6. Ray (split layout, the GPU default) with 1 and 4 ASR actors per GPU (run.ray_actors_per_gpu), sweep's calls"
copies /tmp/sweep-in "$SWEEP_COPIES"
for n in 1 4; do
    echo "== $(date +%T.%N) ray, $n ASR actors per GPU" | tee -a "$OUT/sweep.log"
    rm -rf /tmp/ray-out
    timeout 200 $PY -m qc_pipeline run /tmp/sweep-in --out /tmp/ray-out --engine ray --workers 4 --no-progress \
        --set asr.device=cuda --set diarization.backend=none --set run.ray_actors_per_gpu=$n 2>&1 \
        | grep -E "audio:|calls:|ray layout" | tee -a "$OUT/sweep.log"
done
}

# STEPS picks and orders the checks (default: all); e.g. STEPS="smoke oom sweep raygpu" for the ones left open on
# 2026-11-26 (docs/gpu.md, "Next GPU session")
for s in ${STEPS:-smoke bench oom evalasr sweep raygpu}; do "$s"; done
step "done in $(( $(date +%s) - t0 )) s"
