#!/usr/bin/env python3
"""Samples a running Eddy every 0.5 s until STOP_FILE exists (at most MAX seconds): events
accepted (the key's tenant), store and stream processor lag (`/lag` behind_ms) and the
server's RSS. Writes CSV: t_s,accepted,store_behind_ms,stream_behind_ms,rss_mib.
Usage: sample.py URL KEY PID OUT_CSV STOP_FILE [MAX, default 600]"""
import json, os, sys, time, urllib.request

url, key, pid, out, stop = sys.argv[1:6]
limit = float(sys.argv[6]) if len(sys.argv) > 6 else 600.0


def get(path):
    req = urllib.request.Request(url + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


t0 = time.monotonic()
with open(out, "w") as f:
    f.write("t_s,accepted,store_behind_ms,stream_behind_ms,rss_mib\n")
    while not os.path.exists(stop) and time.monotonic() - t0 < limit:
        try:
            stats, lag = get("/stats"), get("/lag")
            f.write(f"{time.monotonic() - t0:.2f},{stats['since_start']['events_accepted']},"
                    f"{lag['store']['behind_ms']},{lag['stream']['behind_ms']},{rss_mib():.0f}\n")
            f.flush()
        except (OSError, ValueError, KeyError):
            pass  # a slow answer under load: skip this sample
        time.sleep(0.5)
