#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a lent GPU machine that reaches no package index and takes 64 MiB
# per call: Python 3.12 wheels of what its image lacks (CTranslate2, faster-whisper, PyAV, OpenCC, pypinyin,
# scikit-learn 1.9.1, soundfile + cffi for eval_asr; jieba's files), the installed whisper-base, and the speech
# dev sets, as one tar cut into .gpu/base.partNN; Ray and the jsonschema it imports into .gpu/ray.partNN.
# Each device call carries one part (name it in `carry`) and copies it out of the repo, `mkdir -p /tmp/parts &&
# cp .gpu/* /tmp/parts/`: a warm machine keeps /tmp between calls but not the carried folder.  The last call
# runs `PARTS=/tmp/parts bash scripts/gpu_check.sh`.  Run this from the repo root:
#     bash scripts/gpu_stage.sh [SHARED_DATA]        (default ../shared/data)
# .gpu/ is in .gitignore (a carried part must not travel as an untracked file).  Parts leave room for the ~8 MB
# working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared/data}
PART=${PART_BYTES:-56000000}
PY=${PY:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dl() {  # dl DEST SPEC...: manylinux x86-64 CPython 3.12 wheels, no dependencies
    local dest=$1; shift
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dest" "$@"
}
mkdir -p "$tmp/stage/whl" "$tmp/stage/shared" "$tmp/ray/whl" .gpu
rm -f .gpu/base.part* .gpu/ray.part*
dl "$tmp/stage/whl" ctranslate2==4.8.5 faster-whisper==1.2.1 av==18.1.0 OpenCC==1.4.2 pypinyin==0.55.0 \
    scikit-learn==1.9.1 soundfile==0.13.1 cffi==2.0.0
# jieba is an sdist (pure Python): its installed files, without the parts qc_pipeline never imports
jieba=$("$PY" -W ignore -c "import jieba, os; print(os.path.dirname(jieba.__file__))")
cp -r "$jieba" "$tmp/stage/jieba"
rm -rf "$tmp/stage/jieba/"{posseg,analyse,lac_small} && find "$tmp/stage/jieba" -name __pycache__ -prune -exec rm -rf {} +
cp -r models/whisper-base "$tmp/stage/"
for d in speech_zh_aishell_sample speech_zh_samples synthetic_calls; do cp -r "$SHARED/$d" "$tmp/stage/shared/"; done
tar -cf - -C "$tmp" stage | split -b "$PART" -d -a 2 - .gpu/base.part
dl "$tmp/ray/whl" ray==2.60.0 jsonschema==4.25.1 jsonschema-specifications==2025.9.1 referencing==0.36.2 \
    rpds-py==0.27.1
tar -cf - -C "$tmp" ray | split -b "$PART" -d -a 2 - .gpu/ray.part
ls -l .gpu
