#!/usr/bin/env python3
"""Pictures for docs/benchmarks.md from what bench/pipeline.sh recorded in a results dir
(summary.jsonl: one line per round and system; timeline-<round>.csv: bench/sample.py's samples
of Eddy during that round) or bench/soak.sh (soak.csv). Writes PNGs beside them.
Needs matplotlib (pip install matplotlib). Usage: plot.py RESULTS_DIR"""
import csv, json, os, sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

d = sys.argv[1]

# bench/soak.sh: RSS and lag over the whole soak.
soak = os.path.join(d, "soak.csv")
if os.path.exists(soak):
    t, rss, store, stream = [], [], [], []
    for row in csv.DictReader(open(soak)):
        t.append(float(row["t_s"]) / 60)
        rss.append(float(row["rss_mib"]))
        store.append(int(row["store_behind_ms"]))
        stream.append(int(row["stream_behind_ms"]))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(t, rss, label="RSS, MiB", color="tab:red")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(t, store, label="store behind, ms", color="tab:orange", linewidth=0.6)
    ax2.plot(t, stream, label="processor behind, ms", color="tab:green", linewidth=0.6)
    ax2.set_ylabel("behind the log, ms")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower center")
    ax.set_title("Eddy during the soak: memory and lag")
    fig.tight_layout()
    fig.savefig(os.path.join(d, "soak.png"), dpi=110)
if not os.path.exists(os.path.join(d, "summary.jsonl")):
    print(f"plots written to {d}")
    sys.exit(0)
rows = [json.loads(line) for line in open(os.path.join(d, "summary.jsonl"))]
title = rows[0].get("commit", "") if rows else ""

# Eddy beside InfluxDB: acked and end-to-end rates per round.
rounds = sorted({r["round"] for r in rows})
fig, ax = plt.subplots(figsize=(7, 3.6))
w = 0.27
for i, (label, system, field) in enumerate([("Eddy acked", "eddy", "acked"),
                                             ("Eddy end to end", "eddy", "e2e"),
                                             ("InfluxDB 1.6 acked = end to end", "influxdb", "acked")]):
    vals = [next((r[field] for r in rows if r["round"] == n and r["system"] == system), 0) / 1e3
            for n in rounds]
    ax.bar([n + (i - 1) * w for n in rounds], vals, w, label=label)
ax.set_xticks(rounds, [f"round {n}" for n in rounds])
ax.set_ylabel("thousand events/s")
ax.set_title(f"Batched ingest, 1000 readings per request ({title})")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(d, "throughput.png"), dpi=110)

# Latency percentiles as wrk saw them.
fig, ax = plt.subplots(figsize=(7, 3.6))
ps = ["p50", "p75", "p90", "p99"]
for r in rows:
    ax.plot(ps, [r["latency_ms"][p] for p in ps], marker="o",
            label=f"{'Eddy' if r['system'] == 'eddy' else 'InfluxDB 1.6'}, round {r['round']}")
ax.set_ylabel("request latency, ms")
ax.set_yscale("log")
ax.set_title("Latency of a durable 1000-reading request")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(d, "latency.png"), dpi=110)

# Eddy over time: acked rate, and how far behind the store and the processor are.
for n in rounds:
    path = os.path.join(d, f"timeline-{n}.csv")
    if not os.path.exists(path):
        continue
    t, acc, store, stream, rss = [], [], [], [], []
    for row in csv.DictReader(open(path)):
        t.append(float(row["t_s"]))
        acc.append(int(row["accepted"]))
        store.append(int(row["store_behind_ms"]))
        stream.append(int(row["stream_behind_ms"]))
        rss.append(float(row["rss_mib"]))
    rate = [0.0] + [(acc[i] - acc[i - 1]) / max(t[i] - t[i - 1], 1e-3) / 1e3 for i in range(1, len(t))]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(t, rate, label="acked, thousand events/s", color="tab:blue")
    ax.set_xlabel("s")
    ax.set_ylabel("thousand events/s")
    ax2 = ax.twinx()
    ax2.plot(t, store, label="store behind, ms", color="tab:orange")
    ax2.plot(t, stream, label="processor behind, ms", color="tab:green")
    ax2.set_ylabel("behind the log, ms")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower center")
    ax.set_title(f"Eddy during round {n}: throughput and lag (RSS max {max(rss):.0f} MiB)")
    fig.tight_layout()
    fig.savefig(os.path.join(d, f"timeline-{n}.png"), dpi=110)
print(f"plots written to {d}")
