#!/usr/bin/env bash
# The pipeline end to end, Eddy beside InfluxDB 1.6 (Debian `influxdb`, WAL fsync on every
# write) in one run, both driven by wrk with the same readings (1000 per request, 3 metrics,
# 1000 devices; line protocol for InfluxDB), durable acks on both sides:
#   acked       requests/s × 1000 as wrk saw them answered;
#   end to end  for Eddy: the same events over the run plus the time until the store (SQL)
#               and the rollups have applied the whole log (`/lag`); an InfluxDB ack is
#               already queryable, so its end to end is its acked rate.
# Then `eddy loadgen --verify` (its own generator, 1000 per request) as a cross-check.
# Records every round in RESULTS (default bench/results/pipeline-<commit>): summary.jsonl
# and Eddy's timeline (bench/sample.py); `python3 bench/plot.py RESULTS` draws them.
# Needs: a release build, wrk, influxd (apt-get install wrk influxdb). Loopback only; bounded.
# Usage: bench/pipeline.sh [duration per run, default 15s] [rounds, default 2] [connections, default 8]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-15s}
ROUNDS=${2:-2}
CONNS=${3:-8}
source bench/lib.sh
bench_init pipeline
bench_commit bench/pipeline.sh $DUR $ROUNDS $CONNS
RESULTS=${RESULTS:-bench/results/pipeline-$commit}
mkdir -p "$RESULTS"
: > "$RESULTS/summary.jsonl"
ipid=
trap '[[ -n "$ipid" ]] && kill "$ipid" 2>/dev/null; bench_cleanup; true' EXIT

readings_bodies "$work"

influx_conf "$work" 18087

start_eddy 18081
KEY=$(cat "$work/eddy/admin.key")
influxd -config "$work/influx.conf" > "$work/influx.log" 2>&1 &
ipid=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:18087/ping >/dev/null && break; sleep 0.2; done
curl -sf -XPOST 127.0.0.1:18087/query --data-urlencode "q=CREATE DATABASE bench" >/dev/null
echo "eddy $("$EDDY" --version), $(influxd version 2>&1 | head -1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"

# Seconds until the store and the rollups have applied the whole log (at most 300 s).
catch_up() {
  local t0 lag
  t0=$(now)
  for _ in $(seq 30000); do
    lag=$(curl -sf 127.0.0.1:18081/lag -H "X-API-Key: $KEY" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(max(v["store"]["lag"], v["stream"]["lag"]))')
    [[ "$lag" == 0 ]] && break
    sleep 0.01
  done
  since "$t0"
}

# wrk run: prints "<events acked> <seconds> <p50> <p75> <p90> <p99>" (latencies as wrk
# prints them, e.g. 12.3ms).
wrk_run() { # body content-type url key
  local out reqs secs
  out=$(BODY_FILE="$work/$1" CONTENT_TYPE="$2" API_KEY="${4:-}" wrk -t2 -c"$CONNS" -d"$DUR" --latency -s bench/post.lua "$3")
  if grep -q "Non-2xx" <<<"$out"; then echo "   errors: $(grep Non-2xx <<<"$out")" >&2; fi
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  secs=$(awk '/requests in/ {sub(/s,/, "", $4); print $4}' <<<"$out")
  echo "$((reqs * 1000)) $secs $(awk '$1 == "50%" || $1 == "75%" || $1 == "90%" || $1 == "99%" {printf "%s ", $2}' <<<"$out")"
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r (wrk -t2 -c$CONNS -d$DUR, 1000 readings per request)"
  rm -f "$work/stop"
  python3 bench/sample.py http://127.0.0.1:18081 "$KEY" "$pid" "$RESULTS/timeline-$r.csv" "$work/stop" &
  spid=$!
  read -r ev secs p50 p75 p90 p99 < <(wrk_run eddy_1000.json application/json "http://127.0.0.1:18081/api/v1/events" "$KEY")
  wait_s=$(catch_up)
  touch "$work/stop"; wait "$spid" || true
  read -r iev isecs ip50 ip75 ip90 ip99 < <(wrk_run influx_1000.lp text/plain "http://127.0.0.1:18087/write?db=bench")
  python3 - "$RESULTS/summary.jsonl" "$commit" "$r" "$ev" "$secs" "$wait_s" "$iev" "$isecs" "$p50" "$p75" "$p90" "$p99" "$ip50" "$ip75" "$ip90" "$ip99" <<'PY'
import json, sys
out, commit, rnd, ev, secs, wait, iev, isecs = sys.argv[1:9]
lat = sys.argv[9:]
def ms(s):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if s.endswith(unit) and s[:-len(unit)].replace(".", "", 1).isdigit():
            return float(s[:-len(unit)]) * f
    return float("nan")
ev, secs, wait, iev, isecs = int(ev), float(secs), float(wait), int(iev), float(isecs)
acked, e2e, influx = ev / secs, ev / (secs + wait), iev / isecs
names = ["p50", "p75", "p90", "p99"]
el = dict(zip(names, map(ms, lat[:4])))
il = dict(zip(names, map(ms, lat[4:])))
print(f"   eddy      acked {acked/1e3:7.1f}k events/s (p99 {lat[3]}), visible {wait:.2f} s after the run: end to end {e2e/1e3:7.1f}k events/s")
print(f"   influxdb  acked {influx/1e3:7.1f}k points/s (p99 {lat[7]}) = end to end")
print(f"   ratio     acked {acked/influx:.2f}x, end to end {e2e/influx:.2f}x   (targets: 2.5x acked, 2x end to end)")
with open(out, "a") as f:
    f.write(json.dumps({"commit": commit, "round": int(rnd), "system": "eddy", "acked": acked, "e2e": e2e, "visible_after_s": wait, "latency_ms": el}) + "\n")
    f.write(json.dumps({"commit": commit, "round": int(rnd), "system": "influxdb", "acked": influx, "e2e": influx, "latency_ms": il}) + "\n")
PY
done
echo "== eddy loadgen --batch 1000 --concurrency $CONNS --duration $DUR --verify"
"$EDDY" loadgen --url http://127.0.0.1:18081 --api-key "$KEY" --duration "$DUR" --batch 1000 --concurrency "$CONNS" --devices 1000 --verify 2>/dev/null | grep -E "^(events|throughput|latency|visible)"
echo "== server RSS $(ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}'); disk: eddy WAL $(du -sh "$work/eddy/wal" | cut -f1), store $(du -sh "$work/eddy/store" | cut -f1), influxdb $(du -sh "$work/influx" | cut -f1)"
