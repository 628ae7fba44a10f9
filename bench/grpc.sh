#!/usr/bin/env bash
# gRPC beside HTTP on the same server, same events (eddy loadgen's readings), durable acks:
# StreamEvents vs HTTP batched (1000 events per message, 8 streams / connections) and unary
# IngestEvent vs HTTP single events (64 concurrent). Rounds alternate the protocols.
# Needs: a release build. Loopback only; bounded in time.
# Usage: bench/grpc.sh [duration per run, default 15s] [rounds, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-15s}
ROUNDS=${2:-2}
EDDY=${EDDY:-target/release/eddy}
work=$(mktemp -d /tmp/eddy-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$EDDY" --data-dir "$work/eddy" --http-addr 127.0.0.1:18080 --grpc-addr 127.0.0.1:18051 --log-level warn > "$work/eddy.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -f "$work/eddy/eddy.addr" ]] && break; sleep 0.2; done
KEY=$(cat "$work/eddy/admin.key")
lag() { curl -sf 127.0.0.1:18080/lag -H "x-api-key: $KEY" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["store"]["lag"], v["stream"]["lag"])'; }
settle() { # wait (bounded) until the store and rollups caught up, so runs do not overlap
  for _ in $(seq 600); do [[ "$(lag)" == "0 0" ]] && return; sleep 0.1; done
  echo "  (still behind after 60 s: $(lag))"
}
EPID=${pids[0]}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, clock ticks
run() { # label, loadgen args...
  local label=$1; shift
  local out before after
  before=$(cpu "$EPID")
  out=$(/usr/bin/time -f '%U %S' -o "$work/time" "$EDDY" loadgen --url http://127.0.0.1:18080 --grpc-url http://127.0.0.1:18051 --api-key "$KEY" --duration "$DUR" --json "$@" 2>/dev/null)
  settle # the server's CPU until the store and rollups caught up: its whole cost per event
  after=$(cpu "$EPID")
  python3 - "$label" "$out" "$before" "$after" "$(cat "$work/time")" "$(getconf CLK_TCK)" <<'PY'
import json, sys
label, v = sys.argv[1], json.loads(sys.argv[2])
server_s = (int(sys.argv[4]) - int(sys.argv[3])) / int(sys.argv[6])
u, s_ = sys.argv[5].split()
client_s = float(u) + float(s_)
l = v["latency_ms"]
ev = v['events_ok'] or 1
print(f"  {label:<34} {v['events_per_sec']:>10.0f} events/s  {v['requests_per_sec']:>8.0f} req/s  "
      f"p50 {l['p50']:.2f} ms  p99 {l['p99']:.2f} ms  ok {v['success_rate']*100:.1f}%  "
      f"cpu server {server_s:.1f}s ({server_s/ev*1e6:.1f} us/event) loadgen {client_s:.1f}s  errors {v['errors_by_status']}")
PY
}
echo "eddy $("$EDDY" --version 2>/dev/null || true), $(nproc) cores, duration $DUR per run"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  if (( r % 2 )); then
    run "HTTP batched 1000 x 8 conns" --protocol http --batch 1000 --concurrency 8
    run "gRPC StreamEvents 1000 x 8 streams" --protocol grpc-stream --batch 1000 --concurrency 8
    run "HTTP single x 64" --protocol http --batch 1 --concurrency 64
    run "gRPC unary single x 64" --protocol grpc --batch 1 --concurrency 64
  else
    run "gRPC StreamEvents 1000 x 8 streams" --protocol grpc-stream --batch 1000 --concurrency 8
    run "HTTP batched 1000 x 8 conns" --protocol http --batch 1000 --concurrency 8
    run "gRPC unary single x 64" --protocol grpc --batch 1 --concurrency 64
    run "HTTP single x 64" --protocol http --batch 1 --concurrency 64
  fi
done
