#!/usr/bin/env python3
"""The questions of bench/analytics.sh, asked of Eddy (the analytics routes on 127.0.0.1:18084)
and of DuckDB on the same NDJSON; prints p50/p99 of each and checks that the answers agree.

Usage: analytics_ref.py WORKDIR KEY RUNS FROM_MS TO_MS
"""
import json
import sys
import time
import urllib.request

import duckdb

from benchlib import timed

work, key, runs, frm, to = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
BASE = "http://127.0.0.1:18084"
HOUR, DAY = 3_600_000, 86_400_000
STEPS = ["page_view", "click", "signup", "purchase"]


def eddy(path, body=None):
    req = urllib.request.Request(BASE + path, headers={"X-API-Key": key, "Content-Type": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


con = duckdb.connect()
con.execute("SET threads TO 2")
t = time.time()
con.execute(f"""
CREATE TABLE events AS
SELECT "type", "time", device_id, user_id, page_url, source
FROM read_json('{work}/events.ndjson', format = 'newline_delimited', columns = {{
  'type': 'VARCHAR', 'time': 'BIGINT', 'device_id': 'VARCHAR', 'user_id': 'VARCHAR',
  'page_url': 'VARCHAR', 'source': 'VARCHAR'}})""")
print(f"duckdb {duckdb.__version__}: loaded in {time.time() - t:.1f} s (in memory)")
R = f"time >= {frm} AND time < {to}"


def duck_summary():
    q = con.execute
    total = q(f"SELECT count(*), count(DISTINCT user_id), count(DISTINCT device_id), "
              f"count(*) FILTER (WHERE type = 'error') FROM events WHERE {R}").fetchone()
    types = q(f"SELECT type, count(*) n, count(DISTINCT user_id) FROM events WHERE {R} GROUP BY 1 ORDER BY n DESC, 1").fetchall()
    pages = q(f"SELECT page_url, count(*) n, count(DISTINCT user_id) FROM events WHERE {R} AND page_url IS NOT NULL "
              f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10").fetchall()
    sources = q(f"SELECT source, count(*) n, count(DISTINCT user_id) FROM events WHERE {R} AND source IS NOT NULL "
                f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10").fetchall()
    return total, types, pages, sources


def duck_top():
    return con.execute(f"SELECT page_url, count(*) n, count(DISTINCT user_id) FROM events WHERE {R} AND page_url IS NOT NULL "
                       f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10").fetchall()


def duck_funnel():
    # Greedy earliest chain from every entry (ASOF: the next matching event strictly later),
    # best over a user's entries: the same semantics as Eddy's (times are distinct here).
    s = {k: f"(SELECT user_id, time FROM events WHERE type = '{t}' AND user_id IS NOT NULL AND time < {to + HOUR})"
         for k, t in enumerate(STEPS)}
    return con.execute(f"""
    WITH e AS (SELECT user_id, time AS t1 FROM events WHERE type = '{STEPS[0]}' AND user_id IS NOT NULL AND {R}),
    c2 AS (SELECT e.user_id, e.t1, s.time AS t2 FROM e ASOF LEFT JOIN {s[1]} s ON e.user_id = s.user_id AND s.time > e.t1),
    c3 AS (SELECT c.*, s.time AS t3 FROM c2 c ASOF LEFT JOIN {s[2]} s ON c.user_id = s.user_id AND s.time > c.t2),
    c4 AS (SELECT c.*, s.time AS t4 FROM c3 c ASOF LEFT JOIN {s[3]} s ON c.user_id = s.user_id AND s.time > c.t3),
    u AS (SELECT user_id, max(CASE WHEN t4 - t1 <= {HOUR} THEN 4 WHEN t3 - t1 <= {HOUR} THEN 3
                                   WHEN t2 - t1 <= {HOUR} THEN 2 ELSE 1 END) AS depth FROM c4 GROUP BY user_id)
    SELECT count(*), count(*) FILTER (WHERE depth >= 2), count(*) FILTER (WHERE depth >= 3),
           count(*) FILTER (WHERE depth >= 4) FROM u""").fetchone()


def duck_retention():
    return con.execute(f"""
    WITH f AS (SELECT user_id, min(time) AS first FROM events WHERE type = 'page_view' AND user_id IS NOT NULL
               AND time < {to} GROUP BY user_id HAVING min(time) >= {frm}),
    r AS (SELECT user_id, time // {DAY} AS day, max(time) AS last FROM events WHERE type = 'click'
          AND user_id IS NOT NULL AND time >= {frm} AND time < {to + 8 * DAY} GROUP BY 1, 2),
    sizes AS (SELECT first // {DAY} AS cohort, count(*) AS n FROM f GROUP BY 1),
    back AS (SELECT f.first // {DAY} AS cohort, r.day - f.first // {DAY} AS k, count(*) AS n FROM f JOIN r USING (user_id)
             WHERE r.day > f.first // {DAY} OR (r.day = f.first // {DAY} AND r.last > f.first) GROUP BY 1, 2)
    SELECT s.cohort, s.n, list(b.n ORDER BY b.k) FILTER (WHERE b.k IS NOT NULL), list(b.k ORDER BY b.k) FILTER (WHERE b.k IS NOT NULL)
    FROM sizes s LEFT JOIN back b USING (cohort) GROUP BY 1, 2 ORDER BY 1""").fetchall()


funnel_body = {"steps": STEPS, "window": "1h", "from": frm, "to": to}
retention_body = {"cohort": "page_view", "return": "click", "period": "day", "periods": 7, "from": frm, "to": to}
rng = f"from={frm}&to={to}"
QUESTIONS = [
    ("summary (+ previous period)", lambda: eddy(f"/api/v1/analytics/summary?{rng}&top=10"), duck_summary),
    ("top 10 pages", lambda: eddy(f"/api/v1/analytics/top?dimension=page_url&limit=10&{rng}"), duck_top),
    ("funnel, 4 steps, 1 h window", lambda: eddy("/api/v1/analytics/funnel", funnel_body), duck_funnel),
    ("retention, daily cohorts", lambda: eddy("/api/v1/analytics/retention", retention_body), duck_retention),
]


def check(name, e, d):
    if name.startswith("summary"):
        c = e["current"]
        total, types, pages, _ = d
        assert (c["events"], c["users"], c["devices"], c["errors"]) == total[:4], (c, total)
        assert [(r["value"], r["count"], r["users"]) for r in c["by_type"]] == [tuple(x) for x in types]
        assert [(r["value"], r["count"], r["users"]) for r in c["top_pages"]] == [tuple(x) for x in pages]
    elif name.startswith("top"):
        assert [(r["value"], r["count"], r["users"]) for r in e["data"]] == [tuple(x) for x in d], (e, d)
    elif name.startswith("funnel"):
        assert tuple(s["users"] for s in e["steps"]) == tuple(d), (e["steps"], d)
    else:
        for c, (cohort, n, returned, ks) in zip(e["cohorts"], d):
            assert c["users"] == n
            got = {r["period"]: r["users"] for r in c["retention"] if r["users"]}
            assert got == dict(zip(ks or [], returned or [])), (c, returned, ks)
        assert len(e["cohorts"]) == len(d)


print(f"{'question':32} {'eddy p50':>9} {'p99':>8} {'duckdb p50':>11} {'p99':>8}   answers")
for name, e, d in QUESTIONS:
    check(name, e(), d())
    ep50, ep99 = timed(e, runs)
    dp50, dp99 = timed(d, runs)
    print(f"{name:32} {ep50:7.1f}ms {ep99:6.1f}ms {dp50:9.1f}ms {dp99:6.1f}ms   identical")
print("funnel users per step:", [s["users"] for s in eddy("/api/v1/analytics/funnel", funnel_body)["steps"]])
