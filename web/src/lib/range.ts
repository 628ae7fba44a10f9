// Time ranges of the views (presets and custom) and the rollup resolution a chart reads them
// at. Pure functions; the unit tests pin the choices.

import type { Resolution } from './types';

export type RangePreset = '15m' | '1h' | '24h' | '7d';
export type RangeName = RangePreset | 'custom';

export const PRESETS: Record<RangePreset, number> = {
  '15m': 15 * 60,
  '1h': 3600,
  '24h': 86400,
  '7d': 7 * 86400,
};

export const PRESET_LABELS: Record<RangeName, string> = {
  '15m': '15 min',
  '1h': '1 hour',
  '24h': '24 hours',
  '7d': '7 days',
  custom: 'Custom',
};

export const RESOLUTION_SECONDS: Record<Resolution, number> = {
  '1m': 60,
  '1h': 3600,
  '1d': 86400,
};

/** A range as a view's URL holds it: a preset, or custom bounds (RFC 3339 / datetime-local). */
export interface RangeState {
  range: RangeName;
  from: string;
  to: string;
}

/** A resolved range: epoch milliseconds, and whether it moves with the clock. */
export interface ResolvedRange {
  from: number;
  to: number;
  /** A preset ("the last hour"): its end is now, so live data extends it. */
  live: boolean;
}

export function isPreset(s: string): s is RangePreset {
  return Object.prototype.hasOwnProperty.call(PRESETS, s);
}

/**
 * The range in epoch ms at `now`. A custom range whose bounds do not parse, or whose `from`
 * is not before `to`, is `null` (the view says so instead of asking the server).
 */
export function resolveRange(state: RangeState, now: number): ResolvedRange | null {
  if (state.range !== 'custom') {
    const span = PRESETS[isPreset(state.range) ? state.range : '24h'];
    return { from: now - span * 1000, to: now, live: true };
  }
  const from = Date.parse(state.from);
  const to = state.to ? Date.parse(state.to) : now;
  if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) return null;
  // A custom range reaching the present keeps receiving live points.
  return { from, to, live: to >= now - 1000 };
}

/** The most points one chart should draw (about two per horizontal pixel, within bounds). */
export function pointBudget(chartWidthPx: number): number {
  const w = Number.isFinite(chartWidthPx) ? chartWidthPx : 1000;
  return Math.max(500, Math.min(2000, Math.round(w * 2)));
}

/**
 * The rollup resolution for a span of `spanSeconds`: the finest of 1m / 1h / 1d whose number
 * of windows stays within `budget` points. With the default budget 15 min and 1 h read 1m
 * windows, 24 h reads 1m on a wide chart (1440 points) and 1h on a narrow one, 7 d reads 1h
 * (168), and spans past `budget` hours (≈ 62 days at 1500) read 1d.
 */
export function chooseResolution(spanSeconds: number, budget = 1500): Resolution {
  const span = Math.max(0, spanSeconds);
  if (span / 60 <= budget) return '1m';
  if (span / 3600 <= budget) return '1h';
  return '1d';
}

/** The start of the window of `resolution` holding `t` (epoch ms, UTC windows). */
export function windowStart(t: number, resolution: Resolution): number {
  const size = RESOLUTION_SECONDS[resolution] * 1000;
  return Math.floor(t / size) * size;
}

/** Epoch ms as the API's RFC 3339 (UTC, milliseconds). */
export function toApiTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** A `datetime-local` input's value (local time, minutes) for epoch ms. */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
