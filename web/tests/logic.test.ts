import { describe, expect, it } from 'vitest';
import { backoffDelay, passes } from '../src/lib/live';
import { ApiError, buildUrl } from '../src/lib/api';
import { ruleBody, describeRule } from '../src/views/Alerts';
import { retentionRows, stepFromApi, stepToApi } from '../src/views/Analytics';
import { cellText, typeLabel } from '../src/views/Sql';
import { topPages } from '../src/views/Overview';
import { tenantLabel, tenantName } from '../src/lib/session';
import { curlCommand } from '../src/views/Misc';
import type { LiveMessage, Rule } from '../src/lib/types';

describe('reconnect backoff', () => {
  it('grows exponentially with full jitter under a cap', () => {
    expect(backoffDelay(0, () => 1)).toBe(500);
    expect(backoffDelay(3, () => 1)).toBe(4000);
    expect(backoffDelay(20, () => 1)).toBe(30_000);
    expect(backoffDelay(3, () => 0.5)).toBe(2000);
    // Never a tight loop.
    expect(backoffDelay(5, () => 0)).toBe(100);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(4);
      expect(d).toBeGreaterThanOrEqual(100);
      expect(d).toBeLessThanOrEqual(8000);
    }
  });
});

describe('live filters', () => {
  const ev = (device_id?: string, metrics: Record<string, number> = { t: 1 }): LiveMessage => ({
    type: 'event',
    timestamp: '',
    data: { event_id: 'e', time: '', received_at: '', type: 'reading', device_id, metrics, properties: {} },
  });
  it('applies channels, device and metric like the server', () => {
    expect(passes({ channels: ['events'] }, ev('d1'))).toBe(true);
    expect(passes({ channels: ['rollups'] }, ev('d1'))).toBe(false);
    expect(passes({ channels: ['events'], filters: { device_id: 'd1' } }, ev('d1'))).toBe(true);
    expect(passes({ channels: ['events'], filters: { device_id: 'd1' } }, ev('d2'))).toBe(false);
    expect(passes({ channels: ['events'], filters: { device_id: 'd1' } }, ev(undefined))).toBe(false);
    expect(passes({ channels: ['events'], filters: { metric: 'h' } }, ev('d1'))).toBe(false);
    const alert = { type: 'alert', timestamp: '', data: { device_id: 'd2', metric: 't' } } as unknown as LiveMessage;
    expect(passes({ channels: ['alerts'], filters: { device_id: 'd1' } }, alert)).toBe(false);
    expect(passes({ channels: ['alerts'] }, alert)).toBe(true);
  });
});

describe('API client pieces', () => {
  it('builds query strings without empty parameters', () => {
    expect(buildUrl('/api/v1/alerts', { status: 'open', severity: '', device_id: undefined, limit: 5 })).toBe('/api/v1/alerts?status=open&limit=5');
    expect(buildUrl('/x')).toBe('/x');
  });
  it('finds what the server said about a field', () => {
    const rule = new ApiError(400, { error: 'validation_failed', message: 'invalid rule: `window`: between 2 and 10000 points', errors: [{ index: 0, field: 'window', reason: 'between 2 and 10000 points' }] });
    expect(rule.fieldError('window')).toBe('between 2 and 10000 points');
    expect(rule.fieldError('threshold')).toBeUndefined();
    const tenant = new ApiError(400, { error: 'invalid_retention', message: '`retention` `abc` is not a duration' });
    expect(tenant.fieldError('retention')).toBe('`retention` `abc` is not a duration');
    expect(tenant.fieldError('name')).toBeUndefined();
    expect(new ApiError(409, { error: 'conflict', message: 'a tenant named `name` exists' }).fieldError('name')).toBeUndefined();
  });
});

describe('rules', () => {
  const draft = {
    id: 'too-hot',
    name: '',
    kind: 'threshold' as const,
    severity: 'critical' as const,
    devices: 'd1, d2,',
    metrics: 'temperature',
    resolve_after: '',
    enabled: true,
    window: '50',
    threshold: '',
    min_points: '',
    alpha: '',
    op: '>',
    value: '30',
    min: '1',
    max: '',
    minutes: '',
  };
  it('sends only the fields of the kind, numbers as numbers', () => {
    expect(ruleBody(draft, true)).toEqual({ id: 'too-hot', kind: 'threshold', severity: 'critical', devices: ['d1', 'd2'], metrics: ['temperature'], enabled: true, op: '>', value: 30 });
    expect(ruleBody({ ...draft, op: 'outside', max: '5' }, false)).toEqual({ kind: 'threshold', severity: 'critical', devices: ['d1', 'd2'], metrics: ['temperature'], enabled: true, op: 'outside', min: 1, max: 5 });
    expect(ruleBody({ ...draft, kind: 'zscore', threshold: '2.5', resolve_after: '3' }, true)).toMatchObject({ kind: 'zscore', window: 50, threshold: 2.5, resolve_after: 3 });
    expect(ruleBody({ ...draft, kind: 'zscore' }, true)).not.toHaveProperty('value');
  });
  it('describes rules', () => {
    const base: Omit<Rule, 'kind'> = { id: 'r', name: 'r', devices: [], metrics: [], severity: 'warning', resolve_after: 5, enabled: true, created_at: '', updated_at: '' };
    expect(describeRule({ ...base, kind: 'threshold', op: '>', value: 30 } as Rule)).toBe('> 30');
    expect(describeRule({ ...base, kind: 'deadman', minutes: 10 } as Rule)).toBe('no data for 10 min');
  });
});

describe('funnel steps', () => {
  it('round-trips steps through the API form', () => {
    expect(stepToApi({ type: 'signup', field: '', prop: '', value: '' })).toBe('signup');
    expect(stepToApi({ type: 'page_view', field: 'page_url', prop: '', value: '/pricing' })).toEqual({ type: 'page_view', where: { page_url: '/pricing' } });
    expect(stepToApi({ type: 'purchase', field: 'property', prop: 'plan', value: 'pro' })).toEqual({ type: 'purchase', where: { plan: 'pro' } });
    expect(stepToApi({ type: 'x', field: 'property', prop: '', value: 'pro' })).toBe('x');
    expect(stepFromApi({ type: 'purchase', where: { plan: 'pro' } })).toEqual({ type: 'purchase', field: 'property', prop: 'plan', value: 'pro' });
    expect(stepFromApi({ type: 'page_view', where: { page_url: '/a' } })).toEqual({ type: 'page_view', field: 'page_url', prop: '', value: '/a' });
    expect(stepFromApi('signup')).toEqual({ type: 'signup', field: '', prop: '', value: '' });
    expect(stepFromApi(42)).toEqual({ type: '', field: '', prop: '', value: '' });
  });
});

describe('retention heat map', () => {
  it('lays cohorts out by period, leaving periods not started empty', () => {
    const { rows, columns } = retentionRows({
      from: '',
      to: '',
      period: 'day',
      cohort: { type: 'signup', where: {} },
      return: { type: 'page_view', where: {} },
      cohorts: [
        { start: '2026-11-22T00:00:00Z', users: 4, retention: [{ period: 0, share: 0.5, users: 2 }, { period: 1, share: 0.25, users: 1 }, { period: 2, share: 0, users: 0 }] },
        { start: '2026-11-24T00:00:00Z', users: 2, retention: [{ period: 0, share: 1, users: 2 }] },
      ],
      average: [{ period: 0, share: 2 / 3, cohorts: 2 }, { period: 1, share: 0.25, cohorts: 1 }, { period: 2, share: 0, cohorts: 1 }],
    });
    expect(columns).toEqual(['D0', 'D1', 'D2']);
    expect(rows.map((r) => r.label)).toEqual(['2026-11-22', '2026-11-24', 'Average']);
    expect(rows[1].cells).toEqual([{ share: 1, users: 2 }, null, null]);
    expect(rows[0].cells[1]).toEqual({ share: 0.25, users: 1 });
  });
});

describe('small pieces', () => {
  it('writes SQL cells', () => {
    expect(cellText(null)).toBe('NULL');
    expect(cellText({ a: 1 })).toBe('{"a":1}');
    expect(cellText(3.5)).toBe('3.5');
  });
  it('gives a working curl line for the host, with the key as a variable', () => {
    const c = curlCommand('http://127.0.0.1:8080');
    expect(c).toContain('curl -s http://127.0.0.1:8080/api/v1/events');
    expect(c).toContain('-H "x-api-key: $EDDY_API_KEY"');
    expect(c).not.toMatch(/eddy_[A-Za-z0-9]{20}/);
  });
  it('writes Arrow types of the tables list, maps shortened', () => {
    expect(typeLabel('Utf8')).toBe('Utf8');
    expect(typeLabel('Timestamp(ns, "UTC")')).toBe('Timestamp(ns, "UTC")');
    expect(typeLabel('Map("entries": non-null Struct("keys": non-null Utf8, "values": Float64), unsorted)')).toBe('Map(Utf8 → Float64)');
    expect(typeLabel('Map("entries": non-null Struct("keys": non-null Utf8, "values": Utf8), unsorted)')).toBe('Map(Utf8 → Utf8)');
  });
  it('names the tenant by its name, its id kept for when there is none', () => {
    expect(tenantLabel({ tenant_id: 'tn_1', tenant_name: 'acme' })).toBe('acme');
    expect(tenantLabel({ tenant_id: 'tn_1', tenant_name: null })).toBe('tn_1');
    expect(tenantLabel({ tenant_id: 'tn_1' })).toBe('tn_1');
    expect(tenantName({ tenant_id: 'tn_1', tenant_name: 'acme' })).toBe('acme (tn_1)');
    expect(tenantName({ tenant_id: 'default', tenant_name: 'default' })).toBe('default');
    expect(tenantName({ tenant_id: 'tn_1', tenant_name: null })).toBe('tn_1');
  });
});

describe('overview top pages', () => {
  it('gives each page its share of the period’s events and leaves out events without a page', () => {
    const rows = topPages({
      events: 200,
      top_pages: [
        { value: '/pricing', count: 50, users: 7 },
        { value: '/', count: 20, users: 3 },
        { value: null, count: 5, users: 1 },
      ],
    });
    expect(rows).toEqual([
      { label: '/pricing', count: 50, users: 7, share: 0.25 },
      { label: '/', count: 20, users: 3, share: 0.1 },
    ]);
    expect(topPages({ events: 0, top_pages: [] })).toEqual([]);
    expect(topPages({ events: 0, top_pages: [{ value: '/x', count: 0, users: 0 }] })[0].share).toBe(0);
  });
});
