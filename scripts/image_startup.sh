#!/usr/bin/env bash
# What baking the per-machine cache saves: the sample job (networking off) in one built image, side by side,
#   baked   - the image's cache (/opt/qc/cache), as uid 65534: read-only to it, nothing is built
#   empty   - an empty writable cache, as root: what an image without the baked cache pays at first start
#             (CAM++ ONNX export, sentiment copy, homophone answers, in every worker that needs them)
#   memory  - an empty unwritable cache, as uid 65534: CAM++ exported into memory by each worker (a warning)
# alternating for ROUNDS rounds; prints each run's "wall" from the job's summary and the median ratios.
#   bash scripts/image_startup.sh [TAG] [ROUNDS]      (default localhost/qc-pipeline:cpu, 2; after build_images.sh)
set -euo pipefail
TAG=${1:-localhost/qc-pipeline:cpu}
ROUNDS=${2:-2}
JOB='qc-pipeline run samples/calls/manifest.csv samples/chats --out /data/out 2>&1'
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  run() { docker run --rm --network none --user "$1" --entrypoint sh -v "$2:/data/out" "$TAG" -c "$3 $JOB"; }
else
  ctr=$(buildah from --pull-never "$TAG")
  trap 'buildah rm "$ctr" >/dev/null' EXIT
  run() { unshare --net buildah run --isolation chroot --network host --user "$1" -v "$2:/data/out" "$ctr" -- sh -c "$3 $JOB"; }
fi
declare -A WALLS
for round in $(seq "$ROUNDS"); do
  for mode in baked empty memory; do
    case $mode in
      baked) user=65534:65534; pre="" ;;
      empty) user=0:0; pre="rm -rf /tmp/qc-cache; QC_PIPELINE_CACHE_DIR=/tmp/qc-cache" ;;
      memory) user=65534:65534; pre="QC_PIPELINE_CACHE_DIR=/opt/qc/no-cache" ;;
    esac
    out=$(mktemp -d); chmod 777 "$out"
    log=$(run "$user" "$out" "$pre" || true)
    wall=$(grep -oE 'wall: [0-9.]+' <<<"$log" | grep -oE '[0-9.]+' || echo nan)
    WALLS[$mode]+="$wall "
    echo "round $round $mode: $(grep -oE 'calls: [0-9]+ processed \([^)]*\)' <<<"$log"), wall $wall s"
    grep -E "WARNING.*cache" <<<"$log" | sort -u | cut -c1-160 | sed 's/^/    /' || true
    rm -rf "$out"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
b=$(median <<<"${WALLS[baked]}"); e=$(median <<<"${WALLS[empty]}"); m=$(median <<<"${WALLS[memory]}")
echo "median wall: baked $b s, empty cache $e s ($(echo "scale=2; $e / $b" | bc)x), in-memory export $m s ($(echo "scale=2; $m / $b" | bc)x)"
