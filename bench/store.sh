#!/usr/bin/env bash
# Store benchmark: N generated events (default 10M; mixed readings and product events over
# the last 24 h) posted to a release build as NDJSON batches, then: ingest throughput with
# the store writer running, time until everything is visible to queries, on-disk bytes against
# the JSON sent, and the latency of /api/v1/timeseries (24 h by minute, one device and all
# devices), with DuckDB (Python package) answering the same questions on the same data beside
# it — and Eddy's answers checked against DuckDB's.
# Needs: cargo build --release, python3 with duckdb (pip install duckdb). Loopback only.
# Usage: bench/store.sh [events, default 10000000] [query runs, default 50]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
RUNS=${2:-50}
source bench/lib.sh
bench_init store
END_MS=$(( $(date +%s) * 1000 - 60000 ))
FROM_MS=$(( END_MS - 86400000 ))
t=$(now)
bench_events "$N" "$END_MS" 5000
JSON_BYTES=$(stat -c %s "$work/events.ndjson")
echo "generated $N events, $JSON_BYTES bytes of NDJSON ($(python3 -c "print(round($JSON_BYTES / $N, 1))") B/event) in $(since "$t") s"
start_eddy 18080 --query-cache-staleness 0s
KEY=$(cat "$work/eddy/admin.key")
lag() { curl -sf 127.0.0.1:18080/lag -H "X-API-Key: $KEY" | python3 -c "import json,sys; print(json.load(sys.stdin)['${1:-store}']['lag'])"; }

echo "== ingest: $N events, 5000 per request, 4 connections, durable acks"
t=$(now)
find "$work/chunks" -type f | sort | xargs -P 4 -I{} curl -sf -o /dev/null -XPOST 127.0.0.1:18080/api/v1/events \
  -H "X-API-Key: $KEY" -H "Content-Type: application/x-ndjson" --data-binary @{}
INGEST_S=$(since "$t")
t2=$(now)
while [[ "$(lag)" != 0 ]]; do sleep 0.05; done
VISIBLE_S=$(since "$t2")
while [[ "$(lag stream)" != 0 ]]; do sleep 0.05; done
ROLLUPS_S=$(since "$t2")
echo "   acknowledged in $INGEST_S s = $(python3 -c "print(round($N / $INGEST_S))") events/s; all visible to queries $VISIBLE_S s after the last ack ($(python3 -c "print(round($N / ($INGEST_S + $VISIBLE_S)))") events/s end to end)"
echo "   rollups caught up $ROLLUPS_S s after the last ack"
echo "   RSS $(ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}'); rollup windows in memory $(curl -sf 127.0.0.1:18080/metrics | awk '$1 == "eddy_stream_windows" {print $2}'), digests $(curl -sf 127.0.0.1:18080/metrics | awk '$1 == "eddy_store_digest_bytes" {printf "%.0f MiB", $2/1048576}')"

DEV=sensor-00042
mkdir "$work/results"
query() { # name url
  local name=$1 url=$2 src
  curl -sf "$url" -H "X-API-Key: $KEY" > "$work/results/$name.json"
  src=$(curl -sf -o /dev/null -D - "$url" -H "X-API-Key: $KEY" | awk -F': ' 'tolower($1)=="x-eddy-source" {print $2}' | tr -d '\r')
  for _ in $(seq "$RUNS"); do
    curl -sf -o /dev/null -w '%{time_total}\n' "$url" -H "X-API-Key: $KEY"
  done | python3 -c "
import sys, statistics
lat = sorted(float(l) * 1000 for l in sys.stdin)
n = len(__import__('json').load(open('$work/results/$name.json'))['data'])
print(f'eddy $name (from $src): {n} buckets, p50 {statistics.median(lat):.1f} ms, p99 {lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f} ms')"
}
echo "== /api/v1/timeseries, 24 h by minute, avg temperature ($RUNS runs each)"
TS="http://127.0.0.1:18080/api/v1/timeseries?metric=temperature&from=$FROM_MS&to=$END_MS&bucket=1m&agg=avg"
echo "-- from the rollups (the fast path; live server, before a restart)"
query one_device "$TS&device_id=$DEV"
query all_devices "$TS"
query one_device_p95 "${TS/agg=avg/agg=p95}&device_id=$DEV"
query all_devices_p95 "${TS/agg=avg/agg=p95}"
echo "-- from raw data (source=raw)"
query one_device_raw "$TS&device_id=$DEV&source=raw"
query all_devices_raw "$TS&source=raw"
query one_device_p95_raw "${TS/agg=avg/agg=p95}&device_id=$DEV&source=raw"
query all_devices_p95_raw "${TS/agg=avg/agg=p95}&source=raw"

echo "== on disk after a graceful stop (everything persisted)"
stop_eddy
STORE_BYTES=$(du -sb "$work/eddy/store" | cut -f1)
PARQUET_BYTES=$(find "$work/eddy/store" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "   store $STORE_BYTES bytes ($(find "$work/eddy/store" -name '*.parquet' | wc -l) Parquet files, $PARQUET_BYTES bytes of Parquet): JSON / store = $(python3 -c "print(round($JSON_BYTES / $STORE_BYTES, 2))")x, $(python3 -c "print(round($STORE_BYTES / $N, 1))") B/event"
echo "   WAL $(du -sb "$work/eddy/wal" | cut -f1) bytes"
python3 - "$work/eddy/store" <<'PY'
import sys, duckdb
rows = duckdb.sql(f"""
SELECT split_part(file_name, '/', -3) AS t, split_part(path_in_schema, ',', 1) AS c,
       sum(total_compressed_size) AS s
FROM parquet_metadata('{sys.argv[1]}/*/*/*/*.parquet') GROUP BY ALL ORDER BY s DESC""").fetchall()
total = sum(r[2] for r in rows)
print("   bytes by column: " + ", ".join(f"{t}.{c} {s / total:.0%}" for t, c, s in rows[:10]))
PY
echo "== DuckDB beside it"
python3 bench/duckdb_ref.py "$work/events.ndjson" "$work" "$FROM_MS" "$END_MS" "$DEV" "$work/results" "$RUNS"
