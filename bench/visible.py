#!/usr/bin/env python3
"""Ack-to-visible latency: posts one event at a time (durable ack), then polls
/api/v1/events?device_id=<unique> until the event is returned; prints percentiles of the time
from the ack to the first answer that contains it (the polling cost is included, so this is an
upper bound). Loopback only, bounded: N events (default 200).

Usage: visible.py URL API_KEY [N]
"""
import json
import statistics
import sys
import time
import urllib.request

url, key = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
hdr = {"X-API-Key": key, "Content-Type": "application/json"}


def call(path, body=None):
    req = urllib.request.Request(url + path, data=body, headers=hdr, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


lat = []
first_poll = 0
run = str(time.time_ns())
for i in range(n):
    dev = f"vis-{run}-{i}"
    call("/api/v1/events", json.dumps({"device_id": dev, "metrics": {"v": i}}).encode())
    acked = time.perf_counter()
    polls = 0
    while True:
        polls += 1
        if call(f"/api/v1/events?device_id={dev}&from=-1h")["data"]:
            first_poll += polls == 1
            lat.append((time.perf_counter() - acked) * 1000)
            break
        if time.perf_counter() - acked > 5:
            sys.exit(f"event {i} not visible after 5 s")
lat.sort()
print(f"ack -> visible over {n} events: p50 {statistics.median(lat):.2f} ms, "
      f"p99 {lat[min(n - 1, int(n * 0.99))]:.2f} ms, max {lat[-1]:.2f} ms; "
      f"visible at the first query after the ack: {first_poll} of {n}")
