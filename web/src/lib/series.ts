// Chart series as uPlot reads them — one array of x values (epoch seconds, ascending) and one
// array per y series, aligned — built from rollup rows and extended by live points. Live
// points replace the window they fall in or are appended; a cap drops the oldest points, so a
// chart open all day holds a bounded number of points.

import type { LiveRollup, MetricRollup, Resolution } from './types';

/** The most points a chart keeps; older ones are dropped as live points arrive. */
export const MAX_POINTS = 5000;

/** Series of one metric: x and, aligned, avg, min, max and p95 per window. */
export interface MetricSeries {
  x: number[];
  avg: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
  p95: (number | null)[];
}

export type Point = { avg: number | null; min: number | null; max: number | null; p95: number | null };

export function emptySeries(): MetricSeries {
  return { x: [], avg: [], min: [], max: [], p95: [] };
}

const KEYS = ['avg', 'min', 'max', 'p95'] as const;

/** Index of the first x ≥ `t` (binary search over the ascending x values). */
export function lowerBound(xs: readonly number[], t: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Puts the point of window `x` into `s`: replaces the window when it is there (the current
 * minute's rollup updated), appends it when it is newer than every window (the common case:
 * O(1)), inserts it in order otherwise (a late window). A `p95` of `undefined` keeps the
 * window's previous p95 (live rollups carry none). Then drops the oldest points beyond `cap`.
 * Returns what happened.
 */
export function upsertPoint(
  s: MetricSeries,
  x: number,
  p: { avg: number | null; min: number | null; max: number | null; p95?: number | null },
  cap: number = MAX_POINTS,
): 'replaced' | 'appended' | 'inserted' {
  const n = s.x.length;
  let how: 'replaced' | 'appended' | 'inserted';
  if (n > 0 && s.x[n - 1] === x) {
    setAt(s, n - 1, p);
    how = 'replaced';
  } else if (n === 0 || s.x[n - 1] < x) {
    s.x.push(x);
    s.avg.push(p.avg);
    s.min.push(p.min);
    s.max.push(p.max);
    s.p95.push(p.p95 ?? null);
    how = 'appended';
  } else {
    const i = lowerBound(s.x, x);
    if (s.x[i] === x) {
      setAt(s, i, p);
      how = 'replaced';
    } else {
      s.x.splice(i, 0, x);
      s.avg.splice(i, 0, p.avg);
      s.min.splice(i, 0, p.min);
      s.max.splice(i, 0, p.max);
      s.p95.splice(i, 0, p.p95 ?? null);
      how = 'inserted';
    }
  }
  capPoints(s, cap);
  return how;
}

function setAt(s: MetricSeries, i: number, p: { avg: number | null; min: number | null; max: number | null; p95?: number | null }) {
  s.avg[i] = p.avg;
  s.min[i] = p.min;
  s.max[i] = p.max;
  if (p.p95 !== undefined) s.p95[i] = p.p95;
}

/** Drops the oldest points so at most `cap` remain; how many were dropped. */
export function capPoints(s: MetricSeries, cap: number): number {
  const extra = s.x.length - Math.max(0, cap);
  if (extra <= 0) return 0;
  s.x.splice(0, extra);
  for (const k of KEYS) s[k].splice(0, extra);
  return extra;
}

/** Drops points whose window starts before `xMin` (a sliding range moving on); how many. */
export function dropBefore(s: MetricSeries, xMin: number): number {
  const i = lowerBound(s.x, xMin);
  if (i === 0) return 0;
  s.x.splice(0, i);
  for (const k of KEYS) s[k].splice(0, i);
  return i;
}

/** Rollup rows (any order, several metrics) → one series per metric, windows ascending. */
export function seriesFromRollups(rows: readonly MetricRollup[], cap: number = MAX_POINTS): Map<string, MetricSeries> {
  const by = new Map<string, MetricRollup[]>();
  for (const r of rows) {
    let list = by.get(r.metric);
    if (!list) by.set(r.metric, (list = []));
    list.push(r);
  }
  const out = new Map<string, MetricSeries>();
  for (const [metric, list] of by) {
    list.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    const s = emptySeries();
    for (const r of list) {
      upsertPoint(s, Date.parse(r.time) / 1000, { avg: r.avg, min: r.min, max: r.max, p95: r.p95 }, Infinity);
    }
    capPoints(s, cap);
    out.set(metric, s);
  }
  return out;
}

/**
 * Applies a live rollup (the current state of a series' 1-minute window) to the series of a
 * chart read at `resolution`. At 1m it is the window itself: the current minute is replaced
 * (its p95 kept, live rollups carry none) or a new minute appended. Coarser charts cannot be
 * updated exactly from a minute's state (the minute's share of the hour is unknown at load),
 * so the caller re-reads that window instead: `false`.
 */
export function applyLiveRollup(
  s: MetricSeries,
  r: LiveRollup,
  resolution: Resolution,
  cap: number = MAX_POINTS,
): boolean {
  if (resolution !== '1m' || r.resolution !== '1m') return false;
  const x = Date.parse(r.window_start) / 1000;
  if (!Number.isFinite(x)) return false;
  upsertPoint(s, x, { avg: r.avg, min: r.min, max: r.max, p95: undefined }, cap);
  return true;
}

/** The data array uPlot takes: x, avg, min, max and (when shown) p95. */
export function toAligned(s: MetricSeries, withP95: boolean): (number | null)[][] {
  return withP95 ? [s.x, s.avg, s.min, s.max, s.p95] : [s.x, s.avg, s.min, s.max];
}

/**
 * Events per second over a sliding window, counted in one-second slots of a ring (memory is
 * fixed whatever the rate). `add` counts events at a time; `rate` is the mean over the
 * `over` seconds before `now` (the current, partial second left out).
 */
export class RateCounter {
  private readonly slots: Float64Array;
  private readonly seconds: Float64Array;

  constructor(readonly size = 120) {
    this.slots = new Float64Array(size);
    this.seconds = new Float64Array(size).fill(-1);
  }

  add(atMs: number, n = 1): void {
    const sec = Math.floor(atMs / 1000);
    const i = ((sec % this.size) + this.size) % this.size;
    if (this.seconds[i] !== sec) {
      this.seconds[i] = sec;
      this.slots[i] = 0;
    }
    this.slots[i] += n;
  }

  /** Events in the whole second `sec` (epoch seconds). */
  countAt(sec: number): number {
    const i = ((sec % this.size) + this.size) % this.size;
    return this.seconds[i] === sec ? this.slots[i] : 0;
  }

  rate(nowMs: number, over = 5): number {
    const cur = Math.floor(nowMs / 1000);
    const span = Math.max(1, Math.min(over, this.size - 1));
    let total = 0;
    for (let s = cur - span; s < cur; s++) total += this.countAt(s);
    return total / span;
  }

  /** Per-second counts of the `n` whole seconds before `nowMs`, oldest first. */
  history(nowMs: number, n = 60): { x: number[]; y: number[] } {
    const cur = Math.floor(nowMs / 1000);
    const m = Math.max(1, Math.min(n, this.size - 1));
    const x: number[] = [];
    const y: number[] = [];
    for (let s = cur - m; s < cur; s++) {
      x.push(s);
      y.push(this.countAt(s));
    }
    return { x, y };
  }
}
