#!/usr/bin/env bash
# SQL benchmark: N generated events (default 10M, the bench/gen_events.py mix over the last
# 24 h) posted to a release build, then three typical group-bys through POST /api/v1/query
# (p50/p99 over RUNS runs each), the same questions asked of DuckDB (Python package) on the
# same NDJSON beside it, and Eddy's answers checked against DuckDB's.
# Needs: cargo build --release, python3 with duckdb. Loopback only; stops by itself.
# Usage: bench/sql.sh [events, default 10000000] [runs, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
RUNS=${2:-30}
source bench/lib.sh
bench_init sql
END_MS=$(( $(date +%s) * 1000 - 60000 ))
bench_events "$N" "$END_MS" 5000
start_eddy 18083 --max-result-rows 100000
KEY=$(cat "$work/eddy/admin.key")
lag() { curl -sf 127.0.0.1:18083/lag -H "X-API-Key: $KEY" | python3 -c "import json,sys; print(json.load(sys.stdin)['${1:-store}']['lag'])"; }
echo "== ingest: $N events"
find "$work/chunks" -type f | sort | xargs -P 4 -I{} curl -sf -o /dev/null -XPOST 127.0.0.1:18083/api/v1/events \
  -H "X-API-Key: $KEY" -H "Content-Type: application/x-ndjson" --data-binary @{}
while [[ "$(lag)" != 0 || "$(lag stream)" != 0 ]]; do sleep 0.2; done
sleep 70 # the store persists its buffers (every 60 s): queries read Parquet, as they would later
echo "   stored; RSS $(ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}')"
python3 bench/sql_ref.py "$work" "$KEY" "$RUNS"
