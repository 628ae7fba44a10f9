// Small hand-written SVG charts: horizontal bars, a doughnut, a sparkline and the retention
// heat map. Sizes and colours are SVG attributes and CSS classes (never style attributes), so
// they render under the server's CSP; each has an accessible name and per-mark titles.

import { formatCount, formatPercent } from '../lib/format';

export interface BarItem {
  label: string;
  value: number;
  /** Text after the value (a share, a conversion rate). */
  note?: string;
  /** A class for the bar (e.g. a severity or a step). */
  tone?: string;
}

/**
 * Bars with their labels as HTML beside them (text does not stretch with the SVG): the list
 * form every bar chart of the dashboard uses.
 */
export function LabelledBars({ items, label, format = formatCount, max }: { items: BarItem[]; label: string; format?: (n: number) => string; max?: number }) {
  const top = max ?? Math.max(1, ...items.map((i) => i.value));
  return (
    <ul class="lbars" aria-label={label}>
      {items.map((it, i) => {
        const w = top > 0 ? Math.max(0.5, (it.value / top) * 100) : 0.5;
        return (
          <li key={it.label + i}>
            <div class="lbar-text">
              <span class="lbar-label" title={it.label}>
                {it.label}
              </span>
              <span class="lbar-value num">
                {format(it.value)}
                {it.note ? <span class="muted"> · {it.note}</span> : null}
              </span>
            </div>
            <svg class="lbar" width="100%" height="8" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true">
              <rect class="bar-track" x="0" y="0" width="100" height="8" />
              <rect class={`bar ${it.tone ?? ''}`} x="0" y="0" width={w} height="8" />
            </svg>
          </li>
        );
      })}
    </ul>
  );
}

const PALETTE = 8;

/** A doughnut of shares with its legend (largest first; the rest folded into "other"). */
export function Doughnut({ items, label, maxSlices = 7 }: { items: { label: string; value: number }[]; label: string; maxSlices?: number }) {
  const sorted = [...items].sort((a, b) => b.value - a.value);
  const shown = sorted.slice(0, maxSlices);
  const rest = sorted.slice(maxSlices).reduce((s, i) => s + i.value, 0);
  if (rest > 0) shown.push({ label: 'other', value: rest });
  const total = shown.reduce((s, i) => s + i.value, 0);
  const r = 15.915494; // circumference 100
  let offset = 25; // start at 12 o'clock
  return (
    <div class="doughnut">
      <svg viewBox="0 0 42 42" width="140" height="140" role="img" aria-label={label}>
        <circle class="ring-track" cx="21" cy="21" r={r} fill="none" stroke-width="6" />
        {total > 0 &&
          shown.map((s, i) => {
            const pct = (s.value / total) * 100;
            const el = (
              <circle
                key={s.label}
                class={`slice c${i % PALETTE}`}
                cx="21"
                cy="21"
                r={r}
                fill="none"
                stroke-width="6"
                stroke-dasharray={`${pct} ${100 - pct}`}
                stroke-dashoffset={offset}
              >
                <title>{`${s.label}: ${formatCount(s.value)} (${formatPercent(s.value / total)})`}</title>
              </circle>
            );
            offset -= pct;
            return el;
          })}
        <text x="21" y="20" class="ring-total" text-anchor="middle">
          {formatCount(total)}
        </text>
        <text x="21" y="26" class="ring-caption" text-anchor="middle">
          events
        </text>
      </svg>
      <ul class="legend">
        {shown.map((s, i) => (
          <li key={s.label}>
            <span class={`swatch c${i % PALETTE}`} aria-hidden="true" />
            <span class="legend-label" title={s.label}>
              {s.label}
            </span>
            <span class="num">{formatCount(s.value)}</span>
            <span class="num muted">{total > 0 ? formatPercent(s.value / total) : '—'}</span>
          </li>
        ))}
      </ul>
    </div>
  );
}

/** A line of per-second counts (events per second), scaled to its own maximum. */
export function Sparkline({ values, label }: { values: number[]; label: string }) {
  const n = values.length;
  const top = Math.max(1, ...values);
  const pts = values.map((v, i) => `${n > 1 ? (i / (n - 1)) * 100 : 0},${(30 - (v / top) * 28).toFixed(2)}`).join(' ');
  return (
    <svg class="spark" viewBox="0 0 100 30" width="100%" height="40" preserveAspectRatio="none" role="img" aria-label={label}>
      <polyline class="spark-line" points={pts} fill="none" vector-effect="non-scaling-stroke" />
    </svg>
  );
}

export interface HeatRow {
  label: string;
  sub: string;
  cells: ({ share: number; users: number } | null)[];
}

/**
 * The retention heat map: a row per cohort, a column per period; a cell's opacity is its
 * share, its text the percentage. Periods that have not started are empty.
 */
export function Heatmap({ rows, columns, label }: { rows: HeatRow[]; columns: string[]; label: string }) {
  const cw = 52;
  const ch = 30;
  const left = 150;
  const top = 24;
  const width = left + columns.length * cw;
  const height = top + rows.length * ch;
  return (
    <div class="heatmap-scroll">
      <svg class="heatmap" role="img" aria-label={label} width={width} height={height} viewBox={`0 0 ${width} ${height}`}>
        {columns.map((c, j) => (
          <text key={c} class="hm-head" x={left + j * cw + cw / 2} y={16} text-anchor="middle">
            {c}
          </text>
        ))}
        {rows.map((r, i) => (
          <g key={r.label + i}>
            <text class="hm-row" x={4} y={top + i * ch + 13}>
              {r.label}
            </text>
            <text class="hm-sub" x={4} y={top + i * ch + 25}>
              {r.sub}
            </text>
            {r.cells.map((c, j) =>
              c === null ? null : (
                <g key={j}>
                  <title>{`${r.label}, ${columns[j]}: ${formatPercent(c.share)} (${formatCount(c.users)} users)`}</title>
                  <rect class="hm-bg" x={left + j * cw + 1} y={top + i * ch + 1} width={cw - 2} height={ch - 2} rx="3" />
                  <rect
                    class="hm-cell"
                    x={left + j * cw + 1}
                    y={top + i * ch + 1}
                    width={cw - 2}
                    height={ch - 2}
                    rx="3"
                    fill-opacity={Math.min(1, 0.08 + c.share * 0.92).toFixed(3)}
                  />
                  <text class={c.share > 0.55 ? 'hm-text on-dark' : 'hm-text'} x={left + j * cw + cw / 2} y={top + i * ch + 19} text-anchor="middle">
                    {formatPercent(c.share, 0)}
                  </text>
                </g>
              ),
            )}
          </g>
        ))}
      </svg>
    </div>
  );
}
