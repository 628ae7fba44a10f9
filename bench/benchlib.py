"""Shared by the bench/*_ref.py scripts."""
import statistics
import time


def timed(f, runs):
    """p50 and p99 (ms) of `runs` calls of `f`."""
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
