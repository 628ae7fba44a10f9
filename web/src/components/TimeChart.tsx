// A uPlot time-series chart of one metric: the average as a line over a min–max band, and the
// p95 on request. uPlot draws on a canvas and sizes its elements through the CSSOM, so it
// runs under the server's CSP (its stylesheet is bundled). The series arrays are mutated in
// place by live updates; `version` tells the chart to redraw. Each draw's time from
// `setData` (or creation) to uPlot's `draw` hook is kept in `data-render-ms` (no performance
// entry: see the draw hook).

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatValue } from '../lib/format';
import { toAligned, type MetricSeries } from '../lib/series';
import { useTheme } from '../lib/theme';

interface Props {
  series: MetricSeries;
  /** Bumped whenever `series` changed in place. */
  version: number;
  showP95: boolean;
  /** The range drawn (epoch ms), so an empty or sparse chart still shows its span. */
  from: number;
  to: number;
  label: string;
  height?: number;
}

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

export function TimeChart({ series, version, showP95, from, to, label, height = 220 }: Props) {
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const pending = useRef<number | null>(null);
  // What the chart last drew, so the update effect skips what creation just drew.
  const drawn = useRef('');
  const range = useRef({ from, to });
  range.current = { from, to };
  const theme = useTheme();

  // (Re)creates the chart when what it draws or its colours change.
  useEffect(() => {
    const el = holder.current;
    if (!el) return;
    const text = cssVar('--text-muted', '#666');
    const grid = cssVar('--grid', 'rgba(0,0,0,0.08)');
    const avg = cssVar('--chart-avg', '#2563eb');
    const band = cssVar('--chart-band', 'rgba(37,99,235,0.15)');
    const edge = cssVar('--chart-edge', 'rgba(37,99,235,0.35)');
    const p95 = cssVar('--chart-p95', '#d97706');
    const axis: uPlot.Axis = {
      stroke: text,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font: '11px system-ui, sans-serif',
    };
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      cursor: { drag: { x: true, y: false }, focus: { prox: 24 } },
      legend: { live: true },
      scales: {
        x: {
          time: true,
          range: (_u, dmin, dmax) => {
            const r = range.current;
            const lo = Math.min(r.from / 1000, Number.isFinite(dmin) ? dmin : r.from / 1000);
            const hi = Math.max(r.to / 1000, Number.isFinite(dmax) ? dmax : r.to / 1000);
            return [lo, hi];
          },
        },
      },
      axes: [axis, { ...axis, size: 56, values: (_u, vals) => vals.map((v) => formatValue(v)) }],
      series: [
        {},
        { label: 'avg', stroke: avg, width: 2, value: (_u, v) => formatValue(v), spanGaps: false },
        { label: 'min', stroke: edge, width: 1, value: (_u, v) => formatValue(v) },
        { label: 'max', stroke: edge, width: 1, value: (_u, v) => formatValue(v) },
        ...(showP95 ? [{ label: 'p95', stroke: p95, width: 1.5, dash: [5, 4], value: (_u: uPlot, v: number | null) => formatValue(v) }] : []),
      ],
      bands: [{ series: [3, 2], fill: band }],
      hooks: {
        draw: [
          () => {
            const t0 = pending.current;
            if (t0 === null) return;
            pending.current = null;
            const t1 = performance.now();
            el.setAttribute('data-render-ms', (t1 - t0).toFixed(2));
            el.setAttribute('data-points', String(series.x.length));
            const n = series.x.length - 1;
            // The newest window as drawn: [time, avg, min, max] (what live updates change).
            el.setAttribute('data-last', n >= 0 ? JSON.stringify([series.x[n], series.avg[n], series.min[n], series.max[n]]) : '');
            // No performance.measure here: its entries are never dropped by the browser, and a
            // chart redrawn by live readings all day would fill the page's memory with them.
          },
        ],
      },
    };
    pending.current = performance.now();
    drawn.current = `${version}:${from}:${to}`;
    const u = new uPlot(opts, toAligned(series, showP95) as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = Math.max(200, el.clientWidth);
      if (Math.abs(w - u.width) > 1) u.setSize({ width: w, height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // `series` identity changes with a new load; `version` alone with live updates.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [series, showP95, height, theme]);

  // Live updates: the same arrays, new values.
  useEffect(() => {
    const u = plot.current;
    const key = `${version}:${from}:${to}`;
    if (!u || drawn.current === key) return;
    drawn.current = key;
    pending.current = performance.now();
    u.setData(toAligned(series, showP95) as uPlot.AlignedData);
  }, [version, from, to]);

  return <div class="chart" ref={holder} role="img" aria-label={label} />;
}
