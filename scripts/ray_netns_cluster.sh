#!/usr/bin/env bash
# A 2-node Ray cluster on one Linux box, each node in its own network namespace (own IP, joined by a veth
# pair), so that Ray's control and object traffic crosses a real network interface instead of loopback.
# Runs the sample job with --engine ray from the head's namespace, prints the "ray layout" log line (actors
# per node IP), and exits non-zero unless every call is ok and the Parquet content equals a --engine local
# run of the same inputs.
# Needs root, iproute2 (ip, ping) and the [ray] extra in the active venv. Inputs and models must be at the same
# paths on every node; here both namespaces share the filesystem (on real machines: a shared mount, see README).
#   bash scripts/ray_netns_cluster.sh [INPUT...]     as root, venv active (default: the bundled sample calls)
#   sudo env PATH="$PATH" bash scripts/ray_netns_cluster.sh    (sudo resets PATH, hiding the venv)
# Optional: KILL_WORKER_AFTER=S kills the worker node's Ray processes S seconds into the run (node loss).
set -euo pipefail
cd "$(dirname "$0")/.."
INPUTS=("${@:-samples/calls/manifest.csv}")
OUT=${OUT:-/tmp/qc-ray-netns}
HEAD_NS=qc-ray-head WORKER_NS=qc-ray-worker HEAD_IP=10.77.0.1 WORKER_IP=10.77.0.2
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 PYANNOTE_METRICS_ENABLED=0 HF_HUB_OFFLINE=1
RAY=$(command -v ray || true); QC=$(command -v qc-pipeline || true); PY=$(command -v python || true)
: "${RAY:?ray not on PATH: activate the venv with the [ray] extra}" "${QC:?qc-pipeline not on PATH}" "${PY:?python not on PATH}"
KILLER=""

cleanup() {
  [[ -n "$KILLER" ]] && kill "$KILLER" 2>/dev/null || true
  # only the processes inside the two namespaces: `ray stop` would also kill any other Ray on this machine
  for sig in TERM KILL; do
    for ns in "$WORKER_NS" "$HEAD_NS"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -s "$sig" 2>/dev/null || true; done
    [[ $sig == TERM ]] && sleep 3
  done
  ip netns del "$HEAD_NS" 2>/dev/null || true
  ip netns del "$WORKER_NS" 2>/dev/null || true
  # Ray's "latest cluster" pointer, if it is ours, else a later plain ray.init() tries to join the dead cluster
  if grep -qs "^$HEAD_IP:" /tmp/ray/ray_current_cluster; then rm -f /tmp/ray/ray_current_cluster; fi
}
trap cleanup EXIT
trap "exit 143" INT TERM   # so the EXIT trap runs on Ctrl-C / kill too
cleanup
ip netns add "$HEAD_NS"; ip netns add "$WORKER_NS"
ip link add qc-veth-h type veth peer name qc-veth-w
ip link set qc-veth-h netns "$HEAD_NS"; ip link set qc-veth-w netns "$WORKER_NS"
ip -n "$HEAD_NS" addr add "$HEAD_IP/24" dev qc-veth-h; ip -n "$WORKER_NS" addr add "$WORKER_IP/24" dev qc-veth-w
for ns in "$HEAD_NS" "$WORKER_NS"; do ip -n "$ns" link set lo up; done
ip -n "$HEAD_NS" link set qc-veth-h up; ip -n "$WORKER_NS" link set qc-veth-w up
ip netns exec "$HEAD_NS" ping -c1 -W2 "$WORKER_IP" >/dev/null

ip netns exec "$HEAD_NS" "$RAY" start --head --node-ip-address="$HEAD_IP" --port=6379 --num-cpus=1 \
  --include-dashboard=false --disable-usage-stats >/dev/null
ip netns exec "$WORKER_NS" "$RAY" start --address="$HEAD_IP:6379" --node-ip-address="$WORKER_IP" --num-cpus=1 \
  --disable-usage-stats >/dev/null
ip netns exec "$HEAD_NS" "$PY" - "$HEAD_IP:6379" <<'PY'
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print("cluster nodes:", sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]),
      "CPUs:", ray.cluster_resources().get("CPU"))
PY

rm -rf "$OUT"
if [[ -n "${KILL_WORKER_AFTER:-}" ]]; then
  ( sleep "$KILL_WORKER_AFTER"; echo "killing the worker node's Ray processes"; \
    ip netns pids "$WORKER_NS" | xargs -r kill -9 ) &
  KILLER=$!
fi
ms() { date +%s%3N; }
start=$(ms)
ip netns exec "$HEAD_NS" "$QC" run "${INPUTS[@]}" --out "$OUT/ray" --engine ray --workers 2 \
  --set run.ray_address="$HEAD_IP:6379" > "$OUT.ray.log" 2>&1 || { tail -20 "$OUT.ray.log"; exit 1; }
grep -E "ray layout|calls:|failed by reason|audio:|WARNING|ERROR" "$OUT.ray.log" || true
echo "ray wall: $(( $(ms) - start )) ms"
start=$(ms)
"$QC" run "${INPUTS[@]}" --out "$OUT/local" --workers 2 > "$OUT.local.log" 2>&1 || { tail -20 "$OUT.local.log"; exit 1; }
grep -E "calls:|audio:" "$OUT.local.log" || true
echo "local wall: $(( $(ms) - start )) ms"
"$PY" - "$OUT/ray" "$OUT/local" <<'PY'
import sys
from qc_pipeline.sinks import read_table
from qc_pipeline.schema import TABLES
# config_hash covers run.* too (engine, ray_address), so it differs by design
ignore = {"run_id", "processed_at", "stage_seconds", "config_hash"}
def content(root, table):
    return sorted(repr({k: v for k, v in r.items() if k not in ignore}) for r in read_table(root, table).to_pylist())
same = True
for table in TABLES:
    a, b = content(sys.argv[1], table), content(sys.argv[2], table)
    same &= a == b
    print(f"{table}: ray {len(a)} rows, local {len(b)} rows, {'identical' if a == b else 'DIFFERENT'}")
failed = [r["call_id"] for r in read_table(sys.argv[1], "sessions").to_pylist() if r["status"] != "ok"]
if failed:
    print("calls not ok under ray:", failed)
sys.exit(0 if same and not failed else 1)
PY
