import { describe, expect, it } from 'vitest';
import { chooseResolution, pointBudget, PRESETS, resolveRange, windowStart } from '../src/lib/range';

describe('range → resolution', () => {
  it('reads 15 min and 1 h at 1m', () => {
    expect(chooseResolution(PRESETS['15m'])).toBe('1m');
    expect(chooseResolution(PRESETS['1h'])).toBe('1m');
  });

  it('reads 24 h at 1m on a wide chart and 1h on a narrow one (point budget)', () => {
    expect(chooseResolution(PRESETS['24h'], 1500)).toBe('1m'); // 1440 windows
    expect(chooseResolution(PRESETS['24h'], pointBudget(1200))).toBe('1m');
    expect(chooseResolution(PRESETS['24h'], 1000)).toBe('1h'); // 1440 > 1000 → 24 windows
    expect(chooseResolution(PRESETS['24h'], pointBudget(360))).toBe('1h');
  });

  it('reads 7 d at 1h', () => {
    expect(chooseResolution(PRESETS['7d'])).toBe('1h');
    expect(chooseResolution(PRESETS['7d'], pointBudget(3000))).toBe('1h'); // budget capped at 2000
  });

  it('reads long custom ranges at 1d', () => {
    expect(chooseResolution(30 * 86400)).toBe('1h'); // 720 windows
    expect(chooseResolution(90 * 86400)).toBe('1d'); // 2160 hours > 1500
    expect(chooseResolution(365 * 86400)).toBe('1d');
  });

  it('keeps the budget within bounds', () => {
    expect(pointBudget(100)).toBe(500);
    expect(pointBudget(800)).toBe(1600);
    expect(pointBudget(5000)).toBe(2000);
    expect(pointBudget(Number.NaN)).toBe(2000);
  });

  it('puts times in their UTC windows', () => {
    const t = Date.parse('2026-11-24T13:37:42.123Z');
    expect(new Date(windowStart(t, '1m')).toISOString()).toBe('2026-11-24T13:37:00.000Z');
    expect(new Date(windowStart(t, '1h')).toISOString()).toBe('2026-11-24T13:00:00.000Z');
    expect(new Date(windowStart(t, '1d')).toISOString()).toBe('2026-11-24T00:00:00.000Z');
  });
});

describe('ranges', () => {
  const now = Date.parse('2026-11-24T12:00:00Z');
  it('resolves presets against now, live', () => {
    expect(resolveRange({ range: '1h', from: '', to: '' }, now)).toEqual({ from: now - 3600_000, to: now, live: true });
  });
  it('resolves custom bounds', () => {
    const r = resolveRange({ range: 'custom', from: '2026-11-20T00:00:00Z', to: '2026-11-21T00:00:00Z' }, now);
    expect(r).toEqual({ from: Date.parse('2026-11-20T00:00:00Z'), to: Date.parse('2026-11-21T00:00:00Z'), live: false });
  });
  it('treats a custom range ending now as live', () => {
    expect(resolveRange({ range: 'custom', from: '2026-11-20T00:00:00Z', to: '' }, now)?.live).toBe(true);
  });
  it('refuses empty or unreadable custom ranges', () => {
    expect(resolveRange({ range: 'custom', from: '2026-11-21T00:00:00Z', to: '2026-11-20T00:00:00Z' }, now)).toBeNull();
    expect(resolveRange({ range: 'custom', from: 'soon', to: '' }, now)).toBeNull();
  });
});
