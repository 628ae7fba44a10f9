#!/usr/bin/env bash
# Ingest benchmark: Eddy beside InfluxDB 1.6 (Debian `influxdb`, WAL fsync on every write),
# the same readings, batch sizes and connections, driven by wrk and by `eddy loadgen`.
# Needs: a release build (cargo build --release), wrk, influxd. Loopback only; bounded in time.
# Usage: bench/ingest.sh [duration, default 15s]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DUR=${1:-15s}
EDDY=${EDDY:-target/release/eddy}
work=$(mktemp -d /tmp/eddy-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

readings_bodies "$work"

influx_conf "$work" 18086

"$EDDY" --data-dir "$work/eddy" --http-addr 127.0.0.1:18080 --grpc-addr "" --log-level warn > "$work/eddy.out" 2>&1 &
pids+=($!)
influxd -config "$work/influx.conf" > "$work/influx.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [[ -f "$work/eddy/admin.key" ]] && curl -sf 127.0.0.1:18086/ping >/dev/null && break
  sleep 0.2
done
KEY=$(cat "$work/eddy/admin.key")
curl -sf -XPOST 127.0.0.1:18086/query --data-urlencode "q=CREATE DATABASE bench" >/dev/null

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "eddy $("$EDDY" --version), $(influxd version 2>&1 | head -1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"

# Waits until Eddy's store has applied the whole log, and says how long that took: the
# backlog a phase leaves must not eat the CPU of the next one.
settle() {
  local t0=$(date +%s.%N) lag
  for _ in $(seq 6000); do
    lag=$(curl -sf 127.0.0.1:18080/lag -H "X-API-Key: $KEY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["lag"])')
    [[ "$lag" == 0 ]] && break
    sleep 0.1
  done
  echo "   store caught up $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s after the phase (lag now $lag)"
}

run_wrk() { # name conns body content-type url key
  local name=$1 conns=$2 body=$3 ct=$4 url=$5 key=${6:-}
  echo "== $name (wrk -t2 -c$conns -d$DUR)"
  BODY_FILE="$work/$body" CONTENT_TYPE="$ct" API_KEY="$key" wrk -t2 -c"$conns" -d"$DUR" --latency -s bench/post.lua "$url" \
    | grep -E "Requests/sec|Non-2xx|Socket errors|^ +(50|90|99)%|Latency  "
  [[ -n "$key" ]] && settle
  return 0
}

run_wrk "eddy batched 1000/request" 8 eddy_1000.json application/json "http://127.0.0.1:18080/api/v1/events" "$KEY"
run_wrk "influxdb batched 1000/request" 8 influx_1000.lp text/plain "http://127.0.0.1:18086/write?db=bench"
run_wrk "eddy single event" 64 eddy_1.json application/json "http://127.0.0.1:18080/api/v1/events" "$KEY"
run_wrk "influxdb single point" 64 influx_1.lp text/plain "http://127.0.0.1:18086/write?db=bench"

echo "== eddy loadgen batched: --batch 1000 --concurrency 8"
"$EDDY" loadgen --url http://127.0.0.1:18080 --api-key "$KEY" --duration "$DUR" --batch 1000 --concurrency 8 --devices 1000 2>/dev/null
settle
echo "== eddy loadgen single: --batch 1 --concurrency 64"
"$EDDY" loadgen --url http://127.0.0.1:18080 --api-key "$KEY" --duration "$DUR" --batch 1 --concurrency 64 --devices 1000 2>/dev/null
settle
echo "== eddy loadgen fixed rate 10k events/s, single events: --rate 10000 --batch 1 --concurrency 64"
"$EDDY" loadgen --url http://127.0.0.1:18080 --api-key "$KEY" --duration "$DUR" --rate 10000 --batch 1 --concurrency 64 --devices 1000 2>/dev/null
settle
echo "== eddy loadgen fixed rate 10k events/s, batches of 100: --rate 10000 --batch 100 --concurrency 8"
"$EDDY" loadgen --url http://127.0.0.1:18080 --api-key "$KEY" --duration "$DUR" --rate 10000 --batch 100 --concurrency 8 --devices 1000 2>/dev/null
settle
echo "== disk: eddy WAL $(du -sh "$work/eddy/wal" | cut -f1), eddy store $(du -sh "$work/eddy/store" | cut -f1), influxdb $(du -sh "$work/influx" | cut -f1)"
