#!/usr/bin/env python3
"""DuckDB beside Eddy (bench/store.sh): loads the same NDJSON, reports load time and sizes,
runs the same time-series questions and prints their latency, and checks Eddy's answers
against DuckDB's.

Usage: duckdb_ref.py EVENTS.ndjson WORKDIR FROM_MS TO_MS DEVICE RESULTS_DIR RUNS
  RESULTS_DIR holds Eddy's answers (one_device[_raw].json, all_devices[_raw].json) to compare.
"""
import json
import os
import statistics
import sys
import time

import duckdb

src, work, from_ms, to_ms, device, results, runs = sys.argv[1:8]
from_ms, to_ms, runs = int(from_ms), int(to_ms), int(runs)
db_path = os.path.join(work, "duck.db")
con = duckdb.connect(db_path)
con.execute("SET threads TO 2")
t = time.time()
con.execute(f"""
CREATE TABLE events AS
SELECT epoch_ms("time") AS "time", event_id, "type", source, device_id, user_id, page_url,
       metrics, properties
FROM read_json('{src}', format = 'newline_delimited', columns = {{
  'time': 'BIGINT', 'event_id': 'VARCHAR', 'type': 'VARCHAR', 'source': 'VARCHAR',
  'device_id': 'VARCHAR', 'user_id': 'VARCHAR', 'page_url': 'VARCHAR',
  'metrics': 'STRUCT(temperature DOUBLE, humidity DOUBLE, pressure DOUBLE)',
  'properties': 'JSON'}})
""")
con.execute("CHECKPOINT")
load_s = time.time() - t
rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
pq = os.path.join(work, "duck.parquet")
con.execute(f"COPY events TO '{pq}' (FORMAT parquet, COMPRESSION zstd)")
print(f"duckdb {duckdb.__version__}: loaded {rows} events in {load_s:.1f} s; "
      f"database file {os.path.getsize(db_path) / 1e6:.1f} MB, "
      f"COPY TO zstd Parquet {os.path.getsize(pq) / 1e6:.1f} MB")

def q(where):
    return f"""
SELECT time_bucket(INTERVAL 1 minute, "time") AS b, avg(metrics.temperature) AS avg
FROM events
WHERE metrics.temperature IS NOT NULL AND "time" >= epoch_ms({from_ms}) AND "time" < epoch_ms({to_ms}) {where}
GROUP BY b ORDER BY b"""

for name, sql, params in [
    ("one_device", q("AND device_id = ?"), [device]),
    ("all_devices", q(""), []),
]:
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        out = con.execute(sql, params).fetchall()
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"duckdb {name}: {len(out)} buckets, p50 {statistics.median(lat):.1f} ms, p99 {p99:.1f} ms")
    for variant in [name, name + "_raw"]:
        eddy = json.load(open(os.path.join(results, f"{variant}.json")))["data"]
        assert len(eddy) == len(out), f"{variant}: eddy has {len(eddy)} buckets, duckdb {len(out)}"
        worst = max(abs(e["avg"] - d[1]) for e, d in zip(eddy, out))
        assert worst < 1e-9, f"{variant}: answers differ by {worst}"
        print(f"  eddy's {variant} answer matches duckdb's ({len(out)} buckets, largest difference {worst:.1e})")
