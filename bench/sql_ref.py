#!/usr/bin/env python3
"""The SQL questions of bench/sql.sh, asked of Eddy (POST /api/v1/query on 127.0.0.1:18083) and
of DuckDB on the same NDJSON; prints p50/p99 of each and checks that the answers agree.

Usage: sql_ref.py WORKDIR KEY RUNS
"""
import json
import sys
import time
import urllib.request

import duckdb

from benchlib import timed

work, key, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

QUESTIONS = [
    ("events by type",
     "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type",
     "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type"),
    ("top pages by distinct users",
     "SELECT page_url, count(DISTINCT user_id) AS users FROM events WHERE type = 'page_view' "
     "GROUP BY page_url ORDER BY users DESC, page_url LIMIT 10",
     "SELECT page_url, count(DISTINCT user_id) AS users FROM events WHERE type = 'page_view' "
     "GROUP BY page_url ORDER BY users DESC, page_url LIMIT 10"),
    ("temperature per device",
     "SELECT device_id, count(*) AS n, avg(value) AS mean, max(value) AS hi FROM metric_samples "
     "WHERE metric = 'temperature' GROUP BY device_id ORDER BY device_id",
     "SELECT device_id, count(*) AS n, avg(metrics.temperature) AS mean, "
     "max(metrics.temperature) AS hi FROM events WHERE metrics.temperature IS NOT NULL "
     "GROUP BY device_id ORDER BY device_id"),
]


def eddy(sql):
    req = urllib.request.Request(
        "http://127.0.0.1:18083/api/v1/query",
        data=json.dumps({"sql": sql}).encode(),
        headers={"X-API-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["data"]


con = duckdb.connect()
con.execute("SET threads TO 2")
t = time.time()
con.execute(f"""
CREATE TABLE events AS
SELECT "type", device_id, user_id, page_url, metrics
FROM read_json('{work}/events.ndjson', format = 'newline_delimited', columns = {{
  'type': 'VARCHAR', 'device_id': 'VARCHAR', 'user_id': 'VARCHAR', 'page_url': 'VARCHAR',
  'metrics': 'STRUCT(temperature DOUBLE, humidity DOUBLE, pressure DOUBLE)'}})""")
print(f"duckdb {duckdb.__version__}: loaded in {time.time() - t:.1f} s (in memory)")


for name, eddy_sql, duck_sql in QUESTIONS:
    ours = eddy(eddy_sql)
    cols = list(ours[0].keys()) if ours else []
    theirs = [dict(zip(cols, row)) for row in con.execute(duck_sql).fetchall()]
    assert len(ours) == len(theirs), f"{name}: {len(ours)} vs {len(theirs)} rows"
    worst = 0.0
    for a, b in zip(ours, theirs):
        for c in cols:
            if isinstance(a[c], float):
                worst = max(worst, abs(a[c] - b[c]) / max(abs(b[c]), 1e-300))
            else:
                assert a[c] == b[c], f"{name}: {a} vs {b}"
    e50, e99 = timed(lambda: eddy(eddy_sql), runs)
    d50, d99 = timed(lambda: con.execute(duck_sql).fetchall(), runs)
    print(f"   {name}: {len(ours)} rows, same answers (largest relative difference {worst:.1e}); "
          f"eddy p50 {e50:.1f} ms p99 {e99:.1f} ms | duckdb p50 {d50:.1f} ms p99 {d99:.1f} ms")
