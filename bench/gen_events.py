#!/usr/bin/env python3
"""Generates a deterministic mixed event stream as NDJSON, for bench/store.sh.

70% sensor readings (1000 devices, temperature/humidity/pressure, one every ~12 s per device,
values drifting around a per-device level) and 30% product events (10k users by default; page_view,
click, signup, purchase with page_url, source and properties; client-given event_ids, as
SDKs send them). Times cover the `--hours` before `--end` (epoch ms), in order, as a live
stream would deliver them.

Usage: gen_events.py N OUT --end MS [--hours 24] [--users 10000]
"""
import argparse
import json
import random

ap = argparse.ArgumentParser()
ap.add_argument("n", type=int)
ap.add_argument("out")
ap.add_argument("--end", type=int, required=True)
ap.add_argument("--hours", type=float, default=24)
ap.add_argument("--users", type=int, default=10_000)
a = ap.parse_args()

rng = random.Random(42)
span = int(a.hours * 3600 * 1000)
start = a.end - span
pages = [f"/products/{i}" for i in range(200)] + ["/", "/pricing", "/signup", "/docs", "/blog", "/cart", "/checkout"]
sources = ["web", "ios", "android"]
level = [18 + (d % 17) for d in range(1000)]
dumps = json.JSONEncoder(separators=(",", ":")).encode
with open(a.out, "w") as f:
    buf = []
    for i in range(a.n):
        t = start + (i * span) // a.n
        if rng.random() < 0.7:
            d = rng.randrange(1000)
            level[d] += rng.uniform(-0.05, 0.05)
            e = {
                "device_id": f"sensor-{d:05d}",
                "type": "reading",
                "time": t,
                "metrics": {
                    "temperature": round(level[d] + rng.gauss(0, 0.3), 2),
                    "humidity": round(rng.uniform(30, 60), 1),
                    "pressure": round(rng.uniform(1000, 1025), 2),
                },
            }
        else:
            u = rng.randrange(a.users)
            kind = rng.choices(["page_view", "click", "signup", "purchase"], [70, 25, 3, 2])[0]
            e = {
                "event_id": f"{u:05d}-{i:09d}",
                "type": kind,
                "time": t,
                "user_id": f"user-{u}",
                "source": sources[u % 3],
                "page_url": "https://shop.example.com" + rng.choice(pages),
                "properties": {"session": f"s{u}-{t // 1_800_000}", "referrer": rng.choice(["google", "direct", "newsletter", "ads"])},
            }
            if kind == "purchase":
                e["properties"]["amount"] = round(rng.uniform(5, 500), 2)
        buf.append(dumps(e))
        if len(buf) == 10_000:
            f.write("\n".join(buf) + "\n")
            buf.clear()
    if buf:
        f.write("\n".join(buf) + "\n")
