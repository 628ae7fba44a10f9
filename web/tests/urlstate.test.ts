import { describe, expect, it } from 'vitest';
import { decodeState, encodeState } from '../src/lib/urlstate';
import { parseRoute, devicePath } from '../src/lib/router';

const SPEC = { range: '1h', from: '', metric: '', p95: false, periods: 14, steps: [] as unknown[] };

describe('URL state', () => {
  it('leaves defaults out', () => {
    expect(encodeState(SPEC, SPEC)).toBe('');
    expect(encodeState({ ...SPEC, range: '24h' }, SPEC)).toBe('?range=24h');
  });

  it('round-trips every kind of field', () => {
    const state = { range: 'custom', from: '2026-11-24T10:00:00.000Z', metric: 'temp °C & more', p95: true, periods: 7, steps: [{ type: 'page_view', where: { page_url: '/pricing?a=1&b=2' } }, 'signup'] };
    const qs = encodeState(state, SPEC);
    expect(qs.startsWith('?range=custom&from=')).toBe(true);
    expect(decodeState(qs, SPEC)).toEqual(state);
  });

  it('writes keys in the order of the spec, so equal states give equal URLs', () => {
    const a = encodeState({ p95: true, range: '7d' }, SPEC);
    const b = encodeState({ range: '7d', p95: true }, SPEC);
    expect(a).toBe(b);
    expect(a).toBe('?range=7d&p95=1');
  });

  it('drops fields the view does not read', () => {
    expect(encodeState({ range: '7d', key: 'secret' } as never, SPEC)).toBe('?range=7d');
    expect(decodeState('?key=secret', SPEC)).toEqual(SPEC);
  });

  it('takes defaults for malformed values', () => {
    expect(decodeState('?periods=abc&p95=maybe&steps=%7Bnot-json', SPEC)).toEqual(SPEC);
    expect(decodeState('?steps=%7B%7D', SPEC).steps).toEqual([]);
    expect(decodeState('?p95=true&periods=3', SPEC)).toMatchObject({ p95: true, periods: 3 });
  });
});

describe('routes', () => {
  it('names the views', () => {
    expect(parseRoute('/')).toEqual({ view: 'overview' });
    expect(parseRoute('/overview')).toEqual({ view: 'overview' });
    expect(parseRoute('/devices')).toEqual({ view: 'devices' });
    expect(parseRoute('/devices/')).toEqual({ view: 'devices' });
    expect(parseRoute('/devices/sensor%2F1')).toEqual({ view: 'device', deviceId: 'sensor/1' });
    expect(parseRoute('/alerts')).toEqual({ view: 'alerts' });
    expect(parseRoute('/analytics')).toEqual({ view: 'analytics' });
    expect(parseRoute('/sql')).toEqual({ view: 'sql' });
    expect(parseRoute('/admin')).toEqual({ view: 'admin' });
    expect(parseRoute('/nope')).toEqual({ view: 'not-found' });
    expect(parseRoute('/devices/%E0%A4%A')).toEqual({ view: 'not-found' });
  });
  it('encodes device ids in paths', () => {
    expect(devicePath('sensor 1/a')).toBe('/devices/sensor%201%2Fa');
    expect(parseRoute(devicePath('sensor 1/a'))).toEqual({ view: 'device', deviceId: 'sensor 1/a' });
  });
});
