#!/usr/bin/env python3
"""Ingest -> live-feed delivery latency: subscribes to /api/v1/stream and, for every event
received, takes (receive time - event time). Run it beside `eddy loadgen --rate R` (whose
readings carry their send time as `ts`, in ms, so latencies have ms resolution and include the
client's request time). Loopback only; stops after DURATION seconds.

Usage: live_latency.py URL API_KEY DURATION_S
"""
import json
import statistics
import sys
import time
import urllib.request

url, key, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
req = urllib.request.Request(url + "/api/v1/stream?metric=temperature", headers={"X-API-Key": key})
lat = []
end = time.time() + duration
with urllib.request.urlopen(req, timeout=30) as r:
    for raw in r:
        if time.time() > end:
            break
        line = raw.decode()
        if not line.startswith("data:"):
            continue
        msg = json.loads(line[5:])
        if msg.get("type") != "event":
            print("stream says:", msg)
            break
        t = msg["data"]["time"]  # RFC 3339, ms precision from the loadgen
        sec = time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        frac = float("0" + t[19:].rstrip("Z")) if len(t) > 20 else 0.0
        lat.append((time.time() - (sec + frac)) * 1000)
lat.sort()
n = len(lat)
print(f"{n} events received in {duration:.0f} s: delivery latency p50 {statistics.median(lat):.1f} ms, "
      f"p99 {lat[int(n * 0.99)]:.1f} ms, max {lat[-1]:.1f} ms")
