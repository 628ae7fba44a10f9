# Shared by the bench scripts; source it from the repository root.

# bench_init NAME: sets EDDY (the release binary, unless EDDY names another one for an A/B run), work (a temp dir, removed on exit together
# with the server) and pid, and prints the machine.
bench_init() {
  EDDY=${EDDY:-$PWD/target/release/eddy}
  work=$(mktemp -d "/tmp/eddy-$1-bench.XXXXXX")
  pid=
  trap bench_cleanup EXIT
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
}

# bench_commit COMMAND...: sets commit (short hash, "-dirty" with uncommitted changes) and
# prints it with the command line, so every recorded figure names what it measured.
bench_commit() {
  commit=$(git rev-parse --short HEAD)
  [[ -z "$(git status --porcelain 2>/dev/null)" ]] || commit="$commit-dirty"
  echo "commit: $commit; command: $*"
}

bench_cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 2))"; }

# bench_events N END_MS LINES: N events of bench/gen_events.py ending at END_MS in
# $work/events.ndjson (USERS product users, default 10k), split into requests of LINES events
# in $work/chunks.
bench_events() {
  python3 bench/gen_events.py "$1" "$work/events.ndjson" --end "$2" ${USERS:+--users "$USERS"}
  mkdir -p "$work/chunks"
  split -l "$3" -a 5 "$work/events.ndjson" "$work/chunks/c"
}

# start_eddy PORT [ARGS...]: the release server on 127.0.0.1:PORT over $work/eddy; sets pid.
start_eddy() {
  local port=$1
  shift
  rm -f "$work/eddy/eddy.addr"
  "$EDDY" --data-dir "$work/eddy" --http-addr "127.0.0.1:$port" --grpc-addr "" --log-level warn "$@" >> "$work/eddy.out" 2>&1 &
  pid=$!
  for _ in $(seq 600); do [[ -f "$work/eddy/eddy.addr" ]] && break; sleep 0.1; done
}

stop_eddy() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

# ingest_and_persist PORT KEY: posts every chunk of $work/chunks (4 connections), waits until
# the store and the stream processor have applied the whole log, then until the store has
# persisted its buffers (every 60 s), so that queries read Parquet as they would later.
ingest_and_persist() {
  local port=$1 key=$2
  find "$work/chunks" -type f | sort | xargs -P 4 -I{} curl -sf -o /dev/null -XPOST "127.0.0.1:$port/api/v1/events" \
    -H "X-API-Key: $key" -H "Content-Type: application/x-ndjson" --data-binary @{}
  lag_of() { curl -sf "127.0.0.1:$port/lag" -H "X-API-Key: $key" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1']['lag'])"; }
  while [[ "$(lag_of store)" != 0 || "$(lag_of stream)" != 0 ]]; do sleep 0.2; done
  sleep 70
  echo "   stored; RSS $(ps -o rss= -p "$pid" | awk '{printf "%.0f MiB", $1/1024}')"
}

# readings_bodies DIR: the readings bench/ingest.sh and bench/pipeline.sh send — 1000 readings
# (3 metrics, 1000 devices, seeded) as one JSON request (eddy_1000.json) and as line protocol
# (influx_1000.lp), and the first alone (eddy_1.json, influx_1.lp).
readings_bodies() {
  python3 - "$1" <<'PY'
import json, sys, random
w = sys.argv[1]
random.seed(7)
def reading(i):
    return {"device_id": f"sensor-{i % 1000:05d}", "metrics": {
        "temperature": round(20 + random.random() * 10, 2),
        "humidity": round(30 + random.random() * 30, 1),
        "pressure": round(1000 + random.random() * 25, 2)}}
def line(r):
    m = r["metrics"]
    return f'readings,device_id={r["device_id"]} temperature={m["temperature"]},humidity={m["humidity"]},pressure={m["pressure"]}'
batch = [reading(i) for i in range(1000)]
open(f"{w}/eddy_1000.json", "w").write(json.dumps(batch))
open(f"{w}/eddy_1.json", "w").write(json.dumps(batch[0]))
open(f"{w}/influx_1000.lp", "w").write("\n".join(line(r) for r in batch) + "\n")
open(f"{w}/influx_1.lp", "w").write(line(batch[0]) + "\n")
PY
}

# influx_conf DIR PORT: an InfluxDB 1.6 config in DIR/influx.conf (data under DIR/influx, WAL
# fsync on every write, HTTP on 127.0.0.1:PORT).
influx_conf() {
  cat > "$1/influx.conf" <<CONF
reporting-disabled = true
[meta]
  dir = "$1/influx/meta"
[data]
  dir = "$1/influx/data"
  wal-dir = "$1/influx/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$2"
  log-enabled = false
CONF
}
