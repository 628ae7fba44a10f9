#!/usr/bin/env bash
# Analytics benchmark: N generated events (default 10M, the bench/gen_events.py mix over 24 h,
# USERS product users, default 100k) posted to a release build, then the summary, top pages, a
# 4-step funnel and a daily retention table through the analytics routes (p50/p99 over RUNS
# runs each, query cache off), the same questions asked of DuckDB (Python package) on the same
# NDJSON beside it, and Eddy's answers checked against DuckDB's. SQL group-bys: bench/sql.sh.
# Needs: cargo build --release, python3 with duckdb. Loopback only; stops by itself.
# Usage: bench/analytics.sh [events, default 10000000] [runs, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
RUNS=${2:-20}
export USERS=${USERS:-100000}
source bench/lib.sh
bench_init analytics
END_MS=$(( $(date +%s) * 1000 - 60000 ))
bench_events "$N" "$END_MS" 5000
start_eddy 18084 --query-cache-staleness 0s
KEY=$(cat "$work/eddy/admin.key")
echo "== ingest: $N events, $USERS users"
ingest_and_persist 18084 "$KEY"
python3 bench/analytics_ref.py "$work" "$KEY" "$RUNS" "$(( END_MS - 86400000 ))" "$(( END_MS + 1 ))"
