#!/usr/bin/env bash
# Build the CPU and/or CUDA image and smoke-run each one on the bundled samples with networking off.
#   bash scripts/build_images.sh [cpu|cuda|all]        (default: all)
#
# Engine: Docker when a Docker engine answers, else buildah (Debian: `apt-get install buildah`) with chroot
# isolation, which also works inside a VM or container without a Docker daemon (run as root).
# Base image: BASE_IMAGE (default debian:bookworm-slim). Where no registry can be reached (an offline build
# host), BASE_FROM_DEBOOTSTRAP=1 builds a stand-in from Debian's own packages (debootstrap --variant=minbase
# bookworm) and imports it as localhost/debian:bookworm-slim-debootstrap.
# pip settings: PIP_INDEX_URL / PIP_EXTRA_INDEX_URL are passed as build args when set (a PyPI mirror, or an
# empty extra index where download.pytorch.org is unreachable); with buildah, a local PIP_FIND_LINKS folder
# (a wheelhouse) and PIP_CERT file (a proxy's CA bundle) are mounted into the build as well.
# The smoke run is as uid 65534 (nobody), with networking off: the baked cache (/opt/qc/cache, root's) is
# read-only to it, as in a container started with --user; it fails unless every session is ok and the
# CAM++ export is found there (any cache warning of the run is printed).
# Prints per image: build time, size, the smoke run's summary and wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}
case "$WHICH" in cpu) TARGETS=(cpu) ;; cuda) TARGETS=(cuda) ;; all) TARGETS=(cpu cuda) ;;
  *) echo "usage: $0 [cpu|cuda|all]" >&2; exit 2 ;; esac
# fully qualified: buildah without registry search settings cannot resolve a short name
BASE_IMAGE=${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  ENGINE=docker
elif command -v buildah >/dev/null; then
  ENGINE=buildah
else
  echo "no Docker engine answers and buildah is not installed: apt-get install buildah (or start dockerd)" >&2
  exit 1
fi

if [[ "${BASE_FROM_DEBOOTSTRAP:-0}" == 1 ]]; then
  BASE_IMAGE=localhost/debian:bookworm-slim-debootstrap
  if [[ $ENGINE == docker ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    :
  elif [[ $ENGINE == buildah ]] && buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    :
  else
    command -v debootstrap >/dev/null || { echo "BASE_FROM_DEBOOTSTRAP=1 needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
    ROOTFS=$(mktemp -d)
    echo "building a stand-in for debian:bookworm-slim with debootstrap in $ROOTFS"
    debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian >/dev/null
    if [[ $ENGINE == docker ]]; then
      tar -C "$ROOTFS" -c . | docker import - "$BASE_IMAGE" >/dev/null
    else
      tar -C "$ROOTFS" -c . | podman import - "$BASE_IMAGE" >/dev/null   # apt-get install podman
    fi
    rm -rf "$ROOTFS"
  fi
fi

ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[[ -n "${PIP_INDEX_URL+x}" ]] && ARGS+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
[[ -n "${PIP_EXTRA_INDEX_URL+x}" ]] && ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
if [[ $ENGINE == buildah ]]; then
  ARGS+=(--isolation chroot --network host --layers)
  # the stand-in base exists only locally; otherwise let buildah pull the base when it is missing
  [[ "${BASE_FROM_DEBOOTSTRAP:-0}" == 1 ]] && ARGS+=(--pull-never)
  if [[ -n "${PIP_FIND_LINKS:-}" && -d "$PIP_FIND_LINKS" ]]; then
    ARGS+=(-v "$PIP_FIND_LINKS:/run/wheelhouse:ro" --build-arg PIP_FIND_LINKS=/run/wheelhouse)
  fi
  if [[ -n "${PIP_CERT:-}" && -f "$PIP_CERT" ]]; then
    ARGS+=(-v "$PIP_CERT:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
  fi
fi

# Reads the smoke run's Parquet inside the image (the host may have no qc-pipeline / pyarrow).
CHECK='import collections
from qc_pipeline.diarize.campp import onnx_cached
from qc_pipeline.sinks import read_table
rows = read_table("/data/out", "sessions").to_pylist()
status = dict(collections.Counter(r["status"] for r in rows))
print("parquet sessions by status:", status, "| CAM++ export baked and readable:", onnx_cached())
raise SystemExit(0 if set(status) == {"ok"} and onnx_cached() else 1)'

for target in "${TARGETS[@]}"; do
  file=Dockerfile; [[ $target == cuda ]] && file=Dockerfile.cuda
  tag=localhost/qc-pipeline:$target
  out=$(mktemp -d)
  t0=$(date +%s)
  if [[ $ENGINE == docker ]]; then
    docker build "${ARGS[@]}" -f "$file" -t "$tag" . >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  else
    buildah bud "${ARGS[@]}" -f "$file" -t "$tag" . >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  fi
  t1=$(date +%s)
  mkdir -p "$out/data" && chmod 777 "$out/data"
  cmd='qc-pipeline run samples/calls/manifest.csv samples/chats --out /data/out 2>&1 | grep -E "calls:|failed by|audio:|scored:|cache"; python -c "$0"'
  if [[ $ENGINE == docker ]]; then
    size=$(docker image inspect -f '{{.Size}}' "$tag")
    docker run --rm --network none --user 65534:65534 --entrypoint sh -v "$out/data:/data/out" "$tag" -c "$cmd" "$CHECK"
  else
    size=$(buildah inspect --type image -f '{{.Docker.Size}}' "$tag" 2>/dev/null || echo 0)
    [[ "$size" == 0 ]] && size=$(podman image inspect -f '{{.Size}}' "$tag" 2>/dev/null || echo 0)
    ctr=$(buildah from --pull-never "$tag")
    # no network namespace support with chroot isolation: unshare gives the run an empty one instead
    unshare --net buildah run --isolation chroot --network host --user 65534:65534 -v "$out/data:/data/out" "$ctr" -- sh -c "$cmd" "$CHECK"
    buildah rm "$ctr" >/dev/null
  fi
  t2=$(date +%s)
  echo "$target image ($file, $ENGINE, base $BASE_IMAGE): built in $((t1 - t0)) s, $((size / 1000000)) MB, smoke run (no network) $((t2 - t1)) s"
  rm -rf "$out"
done
