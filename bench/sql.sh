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
start_eddy 18083 --max-result-rows 100000 --query-cache-staleness 0s
KEY=$(cat "$work/eddy/admin.key")
echo "== ingest: $N events"
ingest_and_persist 18083 "$KEY"
python3 bench/sql_ref.py "$work" "$KEY" "$RUNS"
