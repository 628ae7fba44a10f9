#!/usr/bin/env bash
# The dashboard in the browser, served by a release build (its embedded web/dist), on a fresh
# server: (a) the e2e 'performance' test ROUNDS times — time to interactive, render of a 24 h
# by-minute chart of 3 series, ack → on-screen latency at 1000 events/s — each round printing
# its EDDY_BENCH line; (b) web/e2e/soak.mjs: a device page (and the overview beside it) open
# for SOAK minutes while the device sends 3 metrics at 1000 events/s, the pages' heap, DOM
# nodes and listeners sampled every 30 s after a forced GC (its EDDY_SOAK line and a table).
# Needs: a release build (EDDY=<binary> for another), Node ≥ 20.19 with web/node_modules
# (cd web && npm ci), Chromium at /usr/bin/chromium (EDDY_CHROMIUM for another).
# Loopback only; bounded in time (about ROUNDS × 1 min + SOAK + 3 min).
# Usage: bench/dashboard.sh [rounds=3] [soak minutes=10]   (rounds 0: the soak only)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SOAK=${2:-10}
PORT=${PORT:-18090}
[[ "$ROUNDS" =~ ^[0-9]+$ && "$SOAK" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "usage: bench/dashboard.sh [rounds=3] [soak minutes=10]" >&2; exit 2; }
[[ -d web/node_modules/playwright-core ]] || { echo "web/node_modules is missing: cd web && npm ci" >&2; exit 1; }
if curl -s -o /dev/null "http://127.0.0.1:$PORT/health"; then echo "port $PORT is in use (PORT=… for another)" >&2; exit 1; fi
EDDY_SET=${EDDY:-}
source bench/lib.sh
bench_init dashboard
[[ -x "$EDDY" ]] || { echo "no binary at $EDDY (cargo build --release, or EDDY=…)" >&2; exit 1; }

commit=$(git rev-parse --short HEAD)
[[ -z "$(git status --porcelain 2>/dev/null)" ]] || commit="$commit-dirty"
echo "commit: $commit; binary: $EDDY ($("$EDDY" --version 2>/dev/null || echo '?'))"
echo "node $(node --version), $("${EDDY_CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null | head -1)"
echo "command: ${EDDY_SET:+EDDY=$EDDY }bench/dashboard.sh $ROUNDS $SOAK"

start_eddy "$PORT"
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/ready" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/ready" || { echo "the server did not become ready:" >&2; tail -20 "$work/eddy.out" >&2; exit 1; }
export EDDY_URL="http://127.0.0.1:$PORT" EDDY_ADMIN_KEY
EDDY_ADMIN_KEY=$(cat "$work/eddy/admin.key")
metric() { curl -sf "$EDDY_URL/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'; }
rss() { ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}'; }

(( ROUNDS > 0 )) && echo "== (a) e2e 'performance' test, $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
  if ! (cd web && timeout 300 node --test --test-concurrency=1 --test-name-pattern=performance e2e/dashboard.test.mjs) > "$work/perf-$r.log" 2>&1; then
    echo "round $r failed:" >&2
    tail -40 "$work/perf-$r.log" >&2
    exit 1
  fi
  line=$(grep -o 'EDDY_BENCH {.*}' "$work/perf-$r.log" | tail -1)
  [[ -n "$line" ]] || { echo "round $r printed no EDDY_BENCH line" >&2; tail -40 "$work/perf-$r.log" >&2; exit 1; }
  echo "round $r: $line"
  echo "${line#EDDY_BENCH }" >> "$work/bench.ndjson"
done
(( ROUNDS > 0 )) && python3 - "$work/bench.ndjson" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
keys = ["tti_ms", "dom_interactive_ms", "chart_24h_render_ms", "latency_events_per_s", "latency_p50_ms", "latency_p99_ms"]
print(f"   {'':<22} {'min':>8} {'median':>8} {'max':>8}   (targets: tti ≤ 1000 ms, 24 h chart ≤ 50 ms, p99 ≤ 100 ms at 1000 events/s)")
for k in keys:
    v = [r[k] for r in runs if r.get(k) is not None]
    if v:
        print(f"   {k:<22} {min(v):>8} {statistics.median(v):>8} {max(v):>8}")
PY
(( ROUNDS > 0 )) && echo "   server: RSS $(rss), live slow-consumer disconnects so far $(metric eddy_live_slow_consumers_total)"

echo "== (b) soak: $SOAK min at 1000 events/s"
(cd web && SOAK_MINUTES="$SOAK" SOAK_RATE=1000 node e2e/soak.mjs)
echo "   server: RSS $(rss), live slow-consumer disconnects in all $(metric eddy_live_slow_consumers_total)"
