#!/usr/bin/env bash
# Checks Eddy's gRPC API with grpcurl, using only server reflection (no proto files).
#
# Usage: grpcurl_check.sh GRPCURL_BINARY ADDR KEY
#   GRPCURL_BINARY  path of grpcurl
#   ADDR            the gRPC address, HOST:PORT (plaintext)
#   KEY             an API key with the `write` scope
#
# The events sent carry no event_id (the server generates one), so the check can run again
# against the same server. Every check runs; each failure is printed; exit 1 if any failed.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 GRPCURL_BINARY ADDR KEY" >&2
    exit 2
fi
GRPCURL=$1 ADDR=$2 KEY=$3

failures=0
fail() {
    echo "FAIL $*" >&2
    failures=$((failures + 1))
}

# grpc ARGS...: runs grpcurl against ADDR, leaving its stdout+stderr in $out and its exit
# status in $rc (never trips `set -e`: some checks expect a failure).
grpc() {
    rc=0
    out=$("$GRPCURL" -plaintext -connect-timeout 5 -max-time 20 "$@" 2>&1) || rc=$?
}
# Same, with the API key (the eddy.v1 services need one; reflection and health do not).
grpc_auth() { grpc -H "x-api-key: $KEY" "$@"; }

# expect_ok WHAT: the last call succeeded.
expect_ok() {
    if [[ $rc -ne 0 ]]; then
        fail "$1: expected success, got exit $rc: $out"
        return 1
    fi
}
# expect_in WHAT TEXT: the last call's output contains TEXT.
expect_in() {
    if ! grep -qF -- "$2" <<<"$out"; then
        fail "$1: expected output containing '$2', got: $out"
    fi
}

# 1. The services, as reflection lists them.
grpc "$ADDR" list
if expect_ok "list"; then
    for service in eddy.v1.EventIngestionService eddy.v1.AnalyticsService \
        eddy.v1.MetricsService grpc.health.v1.Health; do
        grep -qxF "$service" <<<"$out" || fail "list: expected $service, got: $out"
    done
fi

# 2. A message described from reflection.
grpc "$ADDR" describe eddy.v1.Event
expect_ok "describe eddy.v1.Event" && expect_in "describe eddy.v1.Event" "device_id"

# 3. A unary batch of two events.
grpc_auth -d '{"events": [
    {"type": "reading", "device_id": "grpcurl-dev", "metrics": {"t": 1.5}},
    {"type": "reading", "device_id": "grpcurl-dev", "metrics": {"t": 2.5}}]}' \
    "$ADDR" eddy.v1.EventIngestionService/IngestEvents
expect_ok "IngestEvents" && expect_in "IngestEvents" '"accepted": "2"'

# 4. A client stream of two batches on stdin: two acks, in order (uint64 prints as a string).
grpc_auth -d @ "$ADDR" eddy.v1.EventIngestionService/StreamEvents <<'EOF'
{"sequence": 1, "events": [{"device_id": "grpcurl-dev", "metrics": {"t": 3}}]}
{"sequence": 2, "events": [{"device_id": "grpcurl-dev", "metrics": {"t": 4}}]}
EOF
if expect_ok "StreamEvents"; then
    sequences=$(grep -oE '"sequence": "[0-9]+"' <<<"$out" | grep -oE '[0-9]+' \
        | paste -sd, - || true)
    acks=$(grep -c '"ack": {' <<<"$out" || true)
    if [[ $sequences != "1,2" || $acks -ne 2 ]]; then
        fail "StreamEvents: expected 2 acks with sequences 1,2," \
            "got $acks acks with sequences '$sequences': $out"
    fi
fi

# 5. The standard health service (no key).
grpc "$ADDR" grpc.health.v1.Health/Check
expect_ok "Health/Check" && expect_in "Health/Check" '"status": "SERVING"'

# 6. A NaN metric: INVALID_ARGUMENT with a BadRequest field violation (grpcurl prints the
# error details and exits non-zero).
grpc_auth -d '{"events": [{"device_id": "grpcurl-dev", "metrics": {"t": "NaN"}}]}' \
    "$ADDR" eddy.v1.EventIngestionService/IngestEvents
if [[ $rc -eq 0 ]]; then
    fail "IngestEvents with NaN: expected InvalidArgument, got success: $out"
else
    expect_in "IngestEvents with NaN" "Code: InvalidArgument"
    expect_in "IngestEvents with NaN" '"field":"events[0].metrics.t"'
fi

if [[ $failures -ne 0 ]]; then
    echo "grpcurl check: $failures check(s) failed" >&2
    exit 1
fi
echo "ok: grpcurl via reflection: list, describe, IngestEvents (2 accepted)," \
    "StreamEvents (acks 1,2), health SERVING, NaN -> InvalidArgument events[0].metrics.t"
