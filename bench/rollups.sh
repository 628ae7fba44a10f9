#!/usr/bin/env bash
# Persisted rollups benchmark: N generated events (default 2M, the bench/gen_events.py mix over
# the last 24 h) posted to a release build, then: rollup files and checkpoint size, RSS, and
# /api/v1/timeseries over 24 h by minute (one device, all devices; avg and p95) answered
#   1. from memory (default horizons: a day of minute windows stays in memory), and
#   2. after a restart with --rollup-horizons 1h,7d,90d: minute windows older than an hour are
#      read back from the rollup files (the answers must equal phase 1's).
# Needs: cargo build --release. Loopback only; stops by itself.
# Usage: bench/rollups.sh [events, default 2000000] [query runs, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
RUNS=${2:-50}
source bench/lib.sh
bench_init rollups
END_MS=$(( $(date +%s) * 1000 - 60000 ))
FROM_MS=$(( END_MS - 86400000 ))
# Requests of ~43 s of event time each: 4 in flight stay well within the 5-minute lateness, so
# no window misses an event (late windows would send queries to raw data).
CHUNK=$(( N / 2000 > 100 ? N / 2000 : 100 ))
bench_events "$N" "$END_MS" "$CHUNK"
start_eddy 18081 --query-cache-staleness 0s
KEY=$(cat "$work/eddy/admin.key")
lag() { curl -sf 127.0.0.1:18081/lag -H "X-API-Key: $KEY" | python3 -c "import json,sys; print(json.load(sys.stdin)['${1:-store}']['lag'])"; }
metric() { curl -sf 127.0.0.1:18081/metrics | awk -v m="$1" '$1 == m {print $2}'; }

echo "== ingest: $N events, $CHUNK per request, 4 connections"
t=$(now)
find "$work/chunks" -type f | sort | xargs -P 4 -I{} curl -sf -o /dev/null -XPOST 127.0.0.1:18081/api/v1/events \
  -H "X-API-Key: $KEY" -H "Content-Type: application/x-ndjson" --data-binary @{}
echo "   acknowledged in $(since "$t") s"
while [[ "$(lag stream)" != 0 || "$(lag)" != 0 ]]; do sleep 0.1; done
echo "   rollups and store caught up $(since "$t") s after the first request"
sleep 12 # a checkpoint (every 10 s) and an eviction pass (every 5 s)
echo "   rollup files: $(find "$work/eddy/stream/rollups" -name '*.parquet' | wc -l), $(du -sb "$work/eddy/stream/rollups" | cut -f1) bytes; checkpoint.zst $(stat -c %s "$work/eddy/stream/checkpoint.zst") bytes"
echo "   checkpoints: $(metric eddy_stream_checkpoint_duration_seconds_count), mean $(python3 -c "print(round(1000 * $(metric eddy_stream_checkpoint_duration_seconds_sum) / $(metric eddy_stream_checkpoint_duration_seconds_count), 1))") ms"
echo "   late events $(metric eddy_stream_late_total || true); windows in memory $(metric eddy_stream_windows); RSS $(ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}')"

DEV=sensor-00042
TS="http://127.0.0.1:18081/api/v1/timeseries?metric=temperature&from=$FROM_MS&to=$END_MS&bucket=1m&agg=avg"
query() { # phase name url
  local phase=$1 name=$2 url=$3 src
  curl -sf "$url" -H "X-API-Key: $KEY" > "$work/$phase-$name.json"
  src=$(curl -sf -o /dev/null -D - "$url" -H "X-API-Key: $KEY" | awk -F': ' 'tolower($1)=="x-eddy-source" {print $2}' | tr -d '\r')
  for _ in $(seq "$RUNS"); do
    curl -sf -o /dev/null -w '%{time_total}\n' "$url" -H "X-API-Key: $KEY"
  done | python3 -c "
import sys, statistics, json
lat = sorted(float(l) * 1000 for l in sys.stdin)
n = len(json.load(open('$work/$phase-$name.json'))['data'])
print(f'   $name (from $src): {n} buckets, p50 {statistics.median(lat):.1f} ms, p99 {lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f} ms')"
}
queries() {
  query "$1" one_device "$TS&device_id=$DEV"
  query "$1" all_devices "$TS"
  query "$1" one_device_p95 "${TS/agg=avg/agg=p95}&device_id=$DEV"
  query "$1" all_devices_p95 "${TS/agg=avg/agg=p95}"
}
echo "== 1. /api/v1/timeseries, 24 h by minute, from memory ($RUNS runs each)"
queries memory
stop_eddy

echo "== 2. restarted with --rollup-horizons 1h,7d,90d: older minute windows come from the files"
t=$(now)
start_eddy 18081 --rollup-horizons 1h,7d,90d --query-cache-staleness 0s
echo "   started in $(since "$t") s; windows in memory $(metric eddy_stream_windows || echo '?'); RSS $(ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}')"
queries files
echo "   file reads: $(metric eddy_stream_rollup_file_reads_total)"
for q in one_device all_devices one_device_p95 all_devices_p95; do
  python3 - "$work/memory-$q.json" "$work/files-$q.json" "$q" <<'PY'
import json, sys
a, b = (json.load(open(f))["data"] for f in sys.argv[1:3])
assert len(a) == len(b), f"{sys.argv[3]}: {len(a)} vs {len(b)} buckets"
worst = 0.0
for x, y in zip(a, b):
    assert x["time"] == y["time"]
    for k in x:
        if k != "time":
            worst = max(worst, abs(x[k] - y[k]) / max(abs(x[k]), 1e-300))
assert worst <= 1e-12, f"{sys.argv[3]}: relative difference {worst}"
print(f"   {sys.argv[3]}: same answer as from memory (largest relative difference {worst:.1e})")
PY
done
stop_eddy
