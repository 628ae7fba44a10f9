import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatChange,
  formatCompact,
  formatCount,
  formatDuration,
  formatMillis,
  formatPercent,
  formatRate,
  formatRelative,
  formatValue,
  maskSecret,
} from '../src/lib/format';

describe('numbers', () => {
  it('groups counts', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(999)).toBe('999');
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatCount(12.6)).toBe('13');
    expect(formatCount(null)).toBe('—');
    expect(formatCount(Number.NaN)).toBe('—');
  });

  it('shortens large counts', () => {
    expect(formatCompact(999)).toBe('999');
    expect(formatCompact(1000)).toBe('1k');
    expect(formatCompact(1234)).toBe('1.2k');
    expect(formatCompact(45_600)).toBe('46k');
    expect(formatCompact(999_600)).toBe('1M');
    expect(formatCompact(1_250_000)).toBe('1.3M');
    expect(formatCompact(3.4e9)).toBe('3.4B');
    expect(formatCompact(-2500)).toBe('-2.5k');
    expect(formatCompact(undefined)).toBe('—');
  });

  it('gives measured values the digits that tell them apart', () => {
    expect(formatValue(23.456)).toBe('23.46');
    expect(formatValue(1013.25)).toBe('1,013.3');
    expect(formatValue(0.001234)).toBe('0.00123');
    expect(formatValue(0.5)).toBe('0.5');
    expect(formatValue(-4)).toBe('-4');
    expect(formatValue(0)).toBe('0');
    expect(formatValue(1e20)).toBe('1.00e+20');
    expect(formatValue(null)).toBe('—');
    expect(formatValue(Number.POSITIVE_INFINITY)).toBe('—');
  });

  it('writes shares and changes', () => {
    expect(formatPercent(0.1234)).toBe('12.3%');
    expect(formatPercent(1)).toBe('100%');
    expect(formatPercent(0)).toBe('0%');
    expect(formatPercent(0.5, 0)).toBe('50%');
    expect(formatPercent(null)).toBe('—');
    expect(formatChange(0.25)).toBe('+25%');
    expect(formatChange(-0.031)).toBe('-3.1%');
    expect(formatChange(0.0004)).toBe('0%');
    expect(formatChange(2)).toBe('+200%');
    expect(formatChange(null)).toBe('—');
  });

  it('writes bytes and rates', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(12 * 1024 * 1024)).toBe('12 MiB');
    expect(formatRate(0.5)).toBe('0.5/s');
    expect(formatRate(12)).toBe('12/s');
    expect(formatRate(1234)).toBe('1.2k/s');
    expect(formatRate(0)).toBe('0/s');
  });
});

describe('durations', () => {
  it('uses the two largest units', () => {
    expect(formatDuration(0.25)).toBe('250 ms');
    expect(formatDuration(0.0042)).toBe('4.2 ms');
    expect(formatDuration(5.5)).toBe('5.5 s');
    expect(formatDuration(45)).toBe('45 s');
    expect(formatDuration(60)).toBe('1 min');
    expect(formatDuration(90)).toBe('1 min 30 s');
    expect(formatDuration(3600)).toBe('1 h');
    expect(formatDuration(5400)).toBe('1 h 30 min');
    expect(formatDuration(86400)).toBe('1 d');
    expect(formatDuration(216000)).toBe('2 d 12 h');
    expect(formatDuration(-90)).toBe('-1 min 30 s');
    expect(formatDuration(null)).toBe('—');
  });

  it('writes timings', () => {
    expect(formatMillis(0.123)).toBe('0.12 ms');
    expect(formatMillis(3.25)).toBe('3.3 ms');
    expect(formatMillis(250)).toBe('250 ms');
    expect(formatMillis(1530)).toBe('1.53 s');
  });
});

describe('relative times', () => {
  const now = Date.parse('2026-11-24T12:00:00Z');
  it('says how long ago', () => {
    expect(formatRelative('2026-11-24T11:59:58Z', now)).toBe('just now');
    expect(formatRelative('2026-11-24T11:59:48Z', now)).toBe('12 s ago');
    expect(formatRelative('2026-11-24T11:55:00Z', now)).toBe('5 min ago');
    expect(formatRelative('2026-11-24T09:00:00Z', now)).toBe('3 h ago');
    expect(formatRelative('2026-11-22T12:00:00Z', now)).toBe('2 d ago');
    expect(formatRelative(now - 2 * 365 * 86400_000, now)).toBe('2 y ago');
  });
  it('says how far ahead', () => {
    expect(formatRelative('2026-11-24T12:05:00Z', now)).toBe('in 5 min');
  });
  it('refuses what is not a time', () => {
    expect(formatRelative('yesterday', now)).toBe('—');
  });
});

describe('secrets', () => {
  it('masks all but a recognisable prefix', () => {
    const k = 'eddy_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdef';
    const m = maskSecret(k);
    expect(m.startsWith('eddy_AbCd')).toBe(true);
    expect(m).not.toContain('Ij');
    expect(maskSecret('short')).toBe('•••••');
  });
});
