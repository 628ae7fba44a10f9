#!/usr/bin/env bash
# History import: ten months of readings of 10 devices at a 5-minute cadence (864k readings,
# 3 metrics each), sent in time order (5000 per request, one connection, durable acks) to a
# server whose tenants keep data forever, as a team importing its history would. Reports the
# ingest rate, the time until everything is visible, the files the store holds (one per hour and
# table would be 14,400), the store's bytes against the JSON sent, a query over the whole
# history, and how long a graceful shutdown takes.
# Needs: a release build. Loopback only; bounded.
# Usage: bench/history.sh [days, default 300] [devices, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
DAYS=${1:-300}
DEVICES=${2:-10}
source bench/lib.sh
bench_init history
bench_commit bench/history.sh $DAYS $DEVICES
python3 - "$work" "$DAYS" "$DEVICES" <<'PY'
import json, os, random, sys, time
w, days, devices = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(3)
end = (int(time.time()) // 300) * 300 - 3600
steps = days * 288
start = end - steps * 300
os.makedirs(f"{w}/chunks")
buf, k, total = [], 0, 0
def flush():
    global buf, k, total
    body = "\n".join(buf) + "\n"
    open(f"{w}/chunks/c{k:06d}", "w").write(body)
    total += len(body); k += 1; buf = []
for s in range(steps):
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + s * 300))
    for d in range(devices):
        buf.append(json.dumps({"device_id": f"dev-{d:02d}", "time": t, "metrics": {
            "temperature": round(20 + random.random() * 5, 2),
            "humidity": round(40 + random.random() * 10, 1),
            "power": round(random.random() * 100, 1)}}))
        if len(buf) >= 5000:
            flush()
if buf:
    flush()
open(f"{w}/json_bytes", "w").write(str(total))
print(f"generated {steps * devices} readings over {days} days in {k} requests, {total} bytes of NDJSON")
PY
N=$(( DAYS * 288 * DEVICES ))
JSON_BYTES=$(cat "$work/json_bytes")
start_eddy 18083 --default-retention 0
KEY=$(cat "$work/eddy/admin.key")
api() { curl -sf "127.0.0.1:18083$1" -H "X-API-Key: $KEY" "${@:2}"; }
lag() { api /lag | python3 -c "import json,sys; print(json.load(sys.stdin)['$1']['lag'])"; }
t=$(now)
for c in $(find "$work/chunks" -type f | sort); do
  api /api/v1/events -o /dev/null -H "Content-Type: application/x-ndjson" --data-binary @"$c"
done
INGEST_S=$(since "$t")
while [[ "$(lag store)" != 0 || "$(lag stream)" != 0 ]]; do sleep 0.1; done
VISIBLE_S=$(since "$t")
echo "== ingest: acknowledged in $INGEST_S s ($(python3 -c "print(round($N / $INGEST_S))") readings/s), visible to SQL and rollups after $VISIBLE_S s"
# Persist what is buffered (every 60 s), let compaction settle, then count.
sleep 75
store() { api /stats | python3 -c "import json,sys; s=json.load(sys.stdin)['store']; print(s['$1'])"; }
FILES=$(store files)
BYTES=$(store file_bytes)
echo "== store: $FILES Parquet files, $BYTES bytes = JSON / $(python3 -c "print(round($JSON_BYTES / max($BYTES, 1), 2))")"
q='{"sql":"SELECT date_trunc('"'"'month'"'"', time) AS m, metric, avg(value) AS v, count(*) AS n FROM metric_samples GROUP BY 1, 2 ORDER BY 1, 2"}'
for i in 1 2 3; do
  t=$(now)
  rows=$(api /api/v1/query -H "Content-Type: application/json" -d "$q" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['rows'], sum(r['n'] for r in d['data']))")
  echo "   monthly averages over the whole history: $(since "$t") s ($rows: groups, samples)"
done
echo "   RSS $(ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}')"
t=$(now)
kill -TERM "$pid"; status=0; wait "$pid" || status=$?; pid=
echo "== graceful shutdown: $(since "$t") s, exit status $status"
