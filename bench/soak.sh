#!/usr/bin/env bash
# Soak at a fixed offered load: `eddy loadgen --rate RATE` (1000 readings per request, 8
# connections, 1000 devices, durable acks) for MINUTES, while bench/sample.py records the
# server's RSS and how far the store and the processor are behind the log every 0.5 s. Part way
# through, on top of that load, in a second tenant ("probe", its own read_write key): its
# events go through the same log, store writer and processor behind the load's, but its
# queries scan and its feed carries only its own events (a query over the loaded tenant's last
# hour measures that scan, not visibility; its whole feed, 150k events/s, no dashboard reads):
#   ack -> visible in queries   bench/visible.py (one event at a time, polled by device_id);
#   ack -> live feed            a second loadgen of single events with --ws-latency.
# Prints RSS at the start / peak / end and its slope over the second half (MiB per minute), the
# lag percentiles, and both latencies; writes soak.csv (+ soak.png with bench/plot.py) to
# RESULTS (default bench/results/soak-<commit>).
# Use half the maximum end-to-end rate bench/pipeline.sh measured in the same session.
# Needs: a release build. Loopback only; bounded by MINUTES.
# Usage: bench/soak.sh RATE [minutes, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:?usage: bench/soak.sh RATE [minutes]}
MIN=${2:-30}
source bench/lib.sh
bench_init soak
bench_commit bench/soak.sh $RATE $MIN
RESULTS=${RESULTS:-bench/results/soak-$commit}
mkdir -p "$RESULTS"
URL=http://127.0.0.1:18095

start_eddy 18095
KEY=$(cat "$work/eddy/admin.key")
api() { curl -sf "$URL$1" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' "${@:2}"; }
TENANT=$(api /api/v1/tenants -d '{"name":"probe"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
PROBE=$(api "/api/v1/tenants/$TENANT/keys" -d '{"name":"probe","scopes":["read_write"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
SECS=$(python3 -c "print(int(float('$MIN') * 60))")
python3 bench/sample.py "$URL" "$KEY" "$pid" "$RESULTS/soak.csv" "$work/stop" $((SECS + 120)) &
spid=$!
"$EDDY" loadgen --url "$URL" --api-key "$KEY" --rate "$RATE" --duration "${SECS}s" --batch 1000 \
  --concurrency 8 --devices 1000 --json > "$work/loadgen.json" 2> "$work/loadgen.err" &
lpid=$!

# The latency probes run a third of the way in, one after the other.
sleep $((SECS / 3))
echo "== ack -> visible in queries under the load (bench/visible.py, 300 events)"
python3 bench/visible.py "$URL" "$PROBE" 300
echo "== ack -> live feed under the load (loadgen --ws-latency, 200 single events/s for 30 s)"
"$EDDY" loadgen --url "$URL" --api-key "$PROBE" --rate 200 --duration 30s --batch 1 --concurrency 4 \
  --devices 50 --ws-latency 2>/dev/null | grep -E "^(throughput|latency|ws delivery)" || true

wait "$lpid" || { echo "loadgen failed:"; cat "$work/loadgen.err"; }
touch "$work/stop"
wait "$spid" || true
echo "== loadgen"
python3 -c "
import json; s = json.load(open('$work/loadgen.json'))
print(f\"   {s['events_ok']} acked of {s['events_sent']} sent at {s['events_per_sec']} events/s (target {s['target_rate']}), latency ms {s['latency_ms']}, errors {s['errors_by_status']}\")"
python3 - "$RESULTS/soak.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
t = [float(r["t_s"]) for r in rows]
rss = [float(r["rss_mib"]) for r in rows]
half = [(a, b) for a, b in zip(t, rss) if a >= t[-1] / 2]
n = len(half)
mx, my = sum(a for a, _ in half) / n, sum(b for _, b in half) / n
slope = sum((a - mx) * (b - my) for a, b in half) / max(sum((a - mx) ** 2 for a, _ in half), 1e-9) * 60
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]
store = [int(r["store_behind_ms"]) for r in rows]
stream = [int(r["stream_behind_ms"]) for r in rows]
print(f"== over {t[-1]:.0f} s, {len(rows)} samples")
print(f"   RSS start {rss[0]:.0f} MiB, peak {max(rss):.0f} MiB, end {rss[-1]:.0f} MiB; "
      f"second half {min(b for _, b in half):.0f}-{max(b for _, b in half):.0f} MiB, slope {slope:+.2f} MiB/min")
print(f"   store behind the log: p50 {pct(store, .5)} ms, p99 {pct(store, .99)} ms, max {max(store)} ms")
print(f"   processor behind the log: p50 {pct(stream, .5)} ms, p99 {pct(stream, .99)} ms, max {max(stream)} ms")
PY
