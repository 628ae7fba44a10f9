import { describe, expect, it } from 'vitest';
import {
  applyLiveRollup,
  capPoints,
  dropBefore,
  emptySeries,
  lowerBound,
  RateCounter,
  seriesFromRollups,
  toAligned,
  upsertPoint,
} from '../src/lib/series';
import type { LiveRollup, MetricRollup } from '../src/lib/types';

const p = (v: number) => ({ avg: v, min: v - 1, max: v + 1 });

function rollup(time: string, metric: string, avg: number, p95: number | null = avg + 0.5): MetricRollup {
  return {
    time,
    device_id: 'd1',
    metric,
    count: 1,
    sum: avg,
    min: avg - 1,
    max: avg + 1,
    avg,
    first: avg,
    last: avg,
    p50: avg,
    p90: avg,
    p95,
    p99: avg,
    final: false,
    complete: true,
  };
}

function live(window_start: string, avg: number, resolution: '1m' | '1h' = '1m'): LiveRollup {
  return { device_id: 'd1', metric: 't', resolution, window_start, count: 2, sum: avg * 2, min: avg - 2, max: avg + 2, avg, first: avg, last: avg };
}

describe('merging live points', () => {
  it('appends newer windows and replaces the current one', () => {
    const s = emptySeries();
    expect(upsertPoint(s, 60, p(1))).toBe('appended');
    expect(upsertPoint(s, 120, p(2))).toBe('appended');
    expect(upsertPoint(s, 120, p(5))).toBe('replaced');
    expect(s.x).toEqual([60, 120]);
    expect(s.avg).toEqual([1, 5]);
    expect(s.max).toEqual([2, 6]);
  });

  it('inserts a late window in order and replaces an older one in place', () => {
    const s = emptySeries();
    for (const x of [60, 180, 240]) upsertPoint(s, x, p(x));
    expect(upsertPoint(s, 120, p(120))).toBe('inserted');
    expect(s.x).toEqual([60, 120, 180, 240]);
    expect(upsertPoint(s, 180, p(7))).toBe('replaced');
    expect(s.avg).toEqual([60, 120, 7, 240]);
    expect(s.min.length).toBe(4);
    expect(s.p95.length).toBe(4);
  });

  it('keeps a window p95 when the update carries none', () => {
    const s = emptySeries();
    upsertPoint(s, 60, { ...p(1), p95: 9 });
    upsertPoint(s, 60, { ...p(2), p95: undefined });
    expect(s.p95).toEqual([9]);
    upsertPoint(s, 120, { ...p(3), p95: undefined });
    expect(s.p95).toEqual([9, null]);
  });

  it('caps points, dropping the oldest', () => {
    const s = emptySeries();
    for (let i = 0; i < 10; i++) upsertPoint(s, i * 60, p(i), 4);
    expect(s.x).toEqual([360, 420, 480, 540]);
    expect(s.avg).toEqual([6, 7, 8, 9]);
    expect(s.min.length).toBe(4);
    expect(s.max.length).toBe(4);
    expect(s.p95.length).toBe(4);
    expect(capPoints(s, 2)).toBe(2);
    expect(s.x).toEqual([480, 540]);
  });

  it('holds memory flat over a long session', () => {
    const s = emptySeries();
    for (let i = 0; i < 100_000; i++) upsertPoint(s, i * 60, p(i), 1440);
    expect(s.x.length).toBe(1440);
    expect(s.x[0]).toBe((100_000 - 1440) * 60);
  });

  it('drops what slid out of the range', () => {
    const s = emptySeries();
    for (const x of [60, 120, 180, 240]) upsertPoint(s, x, p(x));
    expect(dropBefore(s, 150)).toBe(2);
    expect(s.x).toEqual([180, 240]);
    expect(dropBefore(s, 0)).toBe(0);
  });

  it('finds windows by binary search', () => {
    expect(lowerBound([1, 3, 5], 0)).toBe(0);
    expect(lowerBound([1, 3, 5], 3)).toBe(1);
    expect(lowerBound([1, 3, 5], 4)).toBe(2);
    expect(lowerBound([1, 3, 5], 9)).toBe(3);
  });
});

describe('rollups → series', () => {
  it('splits metrics and orders windows', () => {
    const m = seriesFromRollups([
      rollup('2026-11-24T12:02:00Z', 't', 3),
      rollup('2026-11-24T12:00:00Z', 't', 1),
      rollup('2026-11-24T12:01:00Z', 'h', 50, null),
      rollup('2026-11-24T12:01:00Z', 't', 2),
    ]);
    const t = m.get('t')!;
    expect(t.x).toEqual([0, 60, 120].map((d) => Date.parse('2026-11-24T12:00:00Z') / 1000 + d));
    expect(t.avg).toEqual([1, 2, 3]);
    expect(t.p95).toEqual([1.5, 2.5, 3.5]);
    expect(m.get('h')!.p95).toEqual([null]);
    expect(toAligned(t, false).length).toBe(4);
    expect(toAligned(t, true)[4]).toBe(t.p95);
  });

  it('caps what it loads', () => {
    const rows = Array.from({ length: 20 }, (_, i) => rollup(new Date(Date.UTC(2026, 10, 24, 0, i)).toISOString(), 't', i));
    expect(seriesFromRollups(rows, 5).get('t')!.avg).toEqual([15, 16, 17, 18, 19]);
  });
});

describe('live rollups', () => {
  it('replaces the current minute of a 1m chart and appends the next', () => {
    const m = seriesFromRollups([rollup('2026-11-24T12:00:00Z', 't', 1), rollup('2026-11-24T12:01:00Z', 't', 2)]);
    const s = m.get('t')!;
    expect(applyLiveRollup(s, live('2026-11-24T12:01:00Z', 2.5), '1m')).toBe(true);
    expect(s.avg).toEqual([1, 2.5]);
    expect(s.min).toEqual([0, 0.5]);
    expect(s.p95).toEqual([1.5, 2.5]); // kept: the live message has none
    expect(applyLiveRollup(s, live('2026-11-24T12:02:00Z', 4), '1m')).toBe(true);
    expect(s.avg).toEqual([1, 2.5, 4]);
    expect(s.p95[2]).toBeNull();
  });

  it('leaves coarser charts to a re-read', () => {
    const s = emptySeries();
    expect(applyLiveRollup(s, live('2026-11-24T12:01:00Z', 2), '1h')).toBe(false);
    expect(s.x.length).toBe(0);
  });

  it('caps live appends', () => {
    const s = emptySeries();
    for (let i = 0; i < 50; i++) applyLiveRollup(s, live(new Date(Date.UTC(2026, 10, 24, 0, i)).toISOString(), i), '1m', 10);
    expect(s.x.length).toBe(10);
    expect(s.avg[0]).toBe(40);
  });
});

describe('events per second', () => {
  it('counts per second and averages whole seconds', () => {
    const c = new RateCounter(10);
    const t0 = 1_000_000_000;
    for (let i = 0; i < 30; i++) c.add(t0 + i * 100); // 10 per second for 3 s
    expect(c.countAt(1_000_000)).toBe(10);
    expect(c.rate(t0 + 3500, 3)).toBe(10);
    expect(c.rate(t0 + 3500, 5)).toBe(6); // 30 events over 5 s
  });
  it('forgets what left its ring', () => {
    const c = new RateCounter(5);
    c.add(10_000, 7);
    expect(c.countAt(10)).toBe(7);
    c.add(15_000, 1); // same slot, 5 s later
    expect(c.countAt(10)).toBe(0);
    expect(c.countAt(15)).toBe(1);
    const h = c.history(16_000, 3);
    expect(h.x).toEqual([13, 14, 15]);
    expect(h.y).toEqual([0, 0, 1]);
  });
});
