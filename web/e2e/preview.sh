#!/usr/bin/env bash
# Runs the browser tests against the built dashboard served by `vite preview` (with the
# server's CSP), which proxies the API to a fresh `eddy` on 127.0.0.1:18480 — for developing
# the dashboard before, or apart from, the binary serving it.
#
#   EDDY_BIN=../target/release/eddy e2e/preview.sh [extra node --test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${EDDY_BIN:-../target/release/eddy}
data=$(mktemp -d)
cleanup() {
  [[ -n ${preview_pid:-} ]] && kill "$preview_pid" 2>/dev/null || true
  [[ -n ${eddy_pid:-} ]] && kill "$eddy_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
"$bin" --data-dir "$data" --http-addr 127.0.0.1:18480 --grpc-addr "" >"$data/eddy.log" 2>&1 &
eddy_pid=$!
node node_modules/vite/bin/vite.js preview >"$data/preview.log" 2>&1 &
preview_pid=$!
for _ in $(seq 100); do
  if [[ -s $data/admin.key ]] && curl -sf http://127.0.0.1:18480/ready >/dev/null && curl -sf http://127.0.0.1:4173/ >/dev/null; then break; fi
  sleep 0.2
done
EDDY_URL=http://127.0.0.1:4173 EDDY_ADMIN_KEY=$(cat "$data/admin.key") node --test --test-concurrency=1 "$@" e2e/dashboard.test.mjs
