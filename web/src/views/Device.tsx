// One device: the latest value of each metric, and a chart per metric (average over the
// min–max band, p95 on request) read from the rollups at the resolution the range calls for,
// extended live from the device's feed without reloading.

import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { TimeChart } from '../components/TimeChart';
import { Empty, ErrorNote, Link, Loading, Panel, RangePicker } from '../components/ui';
import { api, ApiError } from '../lib/api';
import { formatDateTime, formatRelative, formatValue } from '../lib/format';
import { useFrameBatch, useNow, useThrottled } from '../lib/hooks';
import { chooseResolution, pointBudget, RESOLUTION_SECONDS, resolveRange, toApiTime, windowStart, type RangeName } from '../lib/range';
import { useQueryState } from '../lib/router';
import { applyLiveRollup, dropBefore, emptySeries, MAX_POINTS, seriesFromRollups, upsertPoint, type MetricSeries } from '../lib/series';
import { useApp } from '../lib/session';
import type { DeviceMetrics, LiveMessage, LiveRollup, Resolution, RollupsAnswer, StoredEvent } from '../lib/types';

const SPEC = { range: '1h', from: '', to: '', metric: '', p95: false };

const RES_LABEL: Record<Resolution, string> = { '1m': '1-minute', '1h': '1-hour', '1d': '1-day' };

interface Latest {
  value: number;
  time: string;
}

export function Device({ id }: { id: string }) {
  const { live } = useApp();
  const [state, setState] = useQueryState(SPEC);
  const range = state.range as RangeName;

  // The device and its latest values.
  const [meta, setMeta] = useState<{ metrics: string[]; latest: Record<string, Latest> } | null>(null);
  const [metaError, setMetaError] = useState<ApiError | null>(null);

  // Chart data: one series per metric, mutated in place by live updates.
  const series = useRef<Map<string, MetricSeries>>(new Map());
  const [gen, setGen] = useState(0);
  const [versions, setVersions] = useState<Record<string, number>>({});
  const [loadError, setLoadError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [loaded, setLoaded] = useState<{ resolution: Resolution; from: number; to: number; live: boolean } | null>(null);

  const chartsRef = useRef<HTMLDivElement>(null);
  const [budget] = useState(() => pointBudget(Math.min(window.innerWidth, 1400) - 80));

  useEffect(() => {
    let stop = false;
    api<DeviceMetrics>(`/api/v1/devices/${encodeURIComponent(id)}/metrics`, { query: { points: 1 } }).then(
      (d) => {
        if (stop) return;
        const latest: Record<string, Latest> = {};
        for (const [m, s] of Object.entries(d.metrics)) latest[m] = { value: s.latest.value, time: s.latest.time };
        setMeta({ metrics: Object.keys(d.metrics).sort(), latest });
        setMetaError(null);
      },
      (e: ApiError) => {
        if (!stop) setMetaError(e);
      },
    );
    return () => {
      stop = true;
    };
  }, [id]);

  // Loads the charts of the range.
  const rangeKey = `${range}|${state.from}|${state.to}|${state.metric}`;
  useEffect(() => {
    const r = resolveRange({ range, from: state.from, to: state.to }, Date.now());
    if (!r) {
      setLoadError(new ApiError(400, { error: 'invalid_range', message: 'The custom range is not valid: its start must be before its end.' }));
      setLoading(false);
      return;
    }
    const resolution = chooseResolution((r.to - r.from) / 1000, budget);
    let stop = false;
    setLoading(true);
    api<RollupsAnswer>('/api/v1/rollups', {
      query: {
        device_id: id,
        metric: state.metric || undefined,
        resolution,
        from: range === 'custom' ? toApiTime(r.from) : `-${range}`,
        to: range === 'custom' ? toApiTime(r.to) : undefined,
      },
    }).then(
      (ans) => {
        if (stop) return;
        series.current = seriesFromRollups(ans.data, MAX_POINTS);
        setLoaded({ resolution, from: r.from, to: r.to, live: r.live });
        setLoadError(null);
        setLoading(false);
        setGen((g) => g + 1);
        setVersions({});
      },
      (e: ApiError) => {
        if (stop) return;
        setLoadError(e);
        setLoading(false);
      },
    );
    return () => {
      stop = true;
    };
  }, [id, rangeKey, budget]);

  // Live: latest values from events, chart windows from rollups.
  const loadedRef = useRef(loaded);
  loadedRef.current = loaded;
  const showP95 = state.p95;
  const p95Ref = useRef(showP95);
  p95Ref.current = showP95;

  const bump = useCallback((metrics: Iterable<string>) => {
    setVersions((v) => {
      const next = { ...v };
      for (const m of metrics) next[m] = (next[m] ?? 0) + 1;
      return next;
    });
  }, []);

  // Coarse charts (1h, 1d) and p95 are re-read for the current window: a minute's live state
  // cannot be folded into an hour exactly.
  const refreshTail = useThrottled(() => {
    const l = loadedRef.current;
    if (!l || !l.live) return;
    const from = windowStart(Date.now(), l.resolution) - (l.resolution === '1m' ? 60_000 : 0);
    api<RollupsAnswer>('/api/v1/rollups', {
      query: { device_id: id, metric: state.metric || undefined, resolution: l.resolution, from: toApiTime(from) },
    }).then(
      (ans) => {
        if (loadedRef.current !== l) return;
        const touched = new Set<string>();
        for (const r of ans.data) {
          let s = series.current.get(r.metric);
          if (!s) series.current.set(r.metric, (s = emptySeries()));
          upsertPoint(s, Date.parse(r.time) / 1000, { avg: r.avg, min: r.min, max: r.max, p95: r.p95 }, MAX_POINTS);
          touched.add(r.metric);
        }
        if (touched.size) bump(touched);
      },
      () => {
        // The next live update asks again; the chart keeps what it has.
      },
    );
  }, 5000);

  const onBatch = useFrameBatch<LiveMessage>((msgs) => {
    const l = loadedRef.current;
    const touched = new Set<string>();
    let latestChanged: Record<string, Latest> | null = null;
    let needTail = false;
    for (const m of msgs) {
      if (m.type === 'event') {
        const e: StoredEvent = m.data;
        for (const [k, v] of Object.entries(e.metrics ?? {})) {
          if (v == null) continue;
          latestChanged ??= {};
          const prev = latestChanged[k];
          if (!prev || Date.parse(e.time) >= Date.parse(prev.time)) latestChanged[k] = { value: v, time: e.time };
        }
      } else if (m.type === 'rollup' && l && l.live) {
        const r: LiveRollup = m.data;
        if (state.metric && r.metric !== state.metric) continue;
        let s = series.current.get(r.metric);
        if (!s) series.current.set(r.metric, (s = emptySeries()));
        if (applyLiveRollup(s, r, l.resolution, MAX_POINTS)) {
          touched.add(r.metric);
          if (p95Ref.current) needTail = true;
        } else needTail = true;
      }
    }
    if (latestChanged) {
      const changed = latestChanged;
      setMeta((mt) => {
        const base = mt ?? { metrics: [], latest: {} };
        const latest = { ...base.latest };
        let metrics = base.metrics;
        for (const [k, v] of Object.entries(changed)) {
          const prev = latest[k];
          if (!prev || Date.parse(v.time) >= Date.parse(prev.time)) latest[k] = v;
          if (!metrics.includes(k)) metrics = [...metrics, k].sort();
        }
        return { metrics, latest };
      });
      setMetaError(null);
    }
    // A sliding range drops what fell out of it.
    if (l && l.live && range !== 'custom') {
      const xMin = (Date.now() - (l.to - l.from)) / 1000 - RESOLUTION_SECONDS[l.resolution];
      for (const [m, s] of series.current) if (dropBefore(s, xMin) > 0) touched.add(m);
    }
    if (touched.size) bump(touched);
    if (needTail) refreshTail();
  }, 50_000);

  useEffect(
    () =>
      live.subscribe(
        { channels: ['events', 'rollups'], filters: { device_id: id, ...(state.metric ? { metric: state.metric } : {}) } },
        onBatch,
      ),
    [live, id, state.metric],
  );

  const now = useNow(loaded?.live ? 5000 : 60_000);
  const metrics = useMemo(() => {
    const names = new Set<string>(meta?.metrics ?? []);
    for (const k of series.current.keys()) names.add(k);
    const all = [...names].sort();
    return state.metric ? all.filter((m) => m === state.metric) : all;
  }, [meta, gen, versions, state.metric]);

  const chartFrom = loaded ? (loaded.live && range !== 'custom' ? now - (loaded.to - loaded.from) : loaded.from) : 0;
  const chartTo = loaded ? (loaded.live ? Math.max(now, loaded.to) : loaded.to) : 0;

  if (metaError && metaError.status === 404 && !meta) {
    return (
      <div class="page">
        <p class="crumbs">
          <Link href="/devices">Devices</Link> / {id}
        </p>
        <h1>{id}</h1>
        <Empty>
          No readings from device <code>{id}</code> yet. It appears here once it sends an event with metrics.
        </Empty>
      </div>
    );
  }

  return (
    <div class="page device">
      <p class="crumbs">
        <Link href="/devices">Devices</Link> <span aria-hidden="true">/</span> <span>{id}</span>
      </p>
      <div class="page-head">
        <h1>{id}</h1>
        <div class="toolbar">
          <RangePicker value={{ range, from: state.from, to: state.to }} onChange={(r) => setState(r)} />
          <label class="inline">
            Metric{' '}
            <select value={state.metric} onChange={(e) => setState({ metric: e.currentTarget.value })} aria-label="Metric">
              <option value="">All metrics</option>
              {(meta?.metrics ?? []).map((m) => (
                <option key={m} value={m}>
                  {m}
                </option>
              ))}
            </select>
          </label>
          <label class="inline check">
            <input type="checkbox" checked={state.p95} onChange={(e) => setState({ p95: e.currentTarget.checked })} /> Show p95
          </label>
        </div>
      </div>

      {metaError && metaError.status !== 404 && <ErrorNote error={metaError} />}

      <Panel title="Latest values">
        {!meta ? (
          metaError ? null : <Loading rows={1} />
        ) : meta.metrics.length === 0 ? (
          <Empty>This device has sent no metrics.</Empty>
        ) : (
          <dl class="latest">
            {meta.metrics.map((m) => {
              const l = meta.latest[m];
              return (
                <div key={m} class="latest-item">
                  <dt>{m}</dt>
                  <dd>
                    <output class="latest-value num" data-metric={m} aria-label={`${m} latest value`}>
                      {l ? formatValue(l.value) : '—'}
                    </output>
                    <span class="muted small" title={l ? formatDateTime(l.time) : undefined}>
                      {l ? formatRelative(l.time, now) : ''}
                    </span>
                  </dd>
                </div>
              );
            })}
          </dl>
        )}
      </Panel>

      {loadError && <ErrorNote error={loadError} />}
      <div class="charts" ref={chartsRef} data-resolution={loaded?.resolution}>
        {loading && !loaded ? (
          <Panel>
            <Loading label="Loading charts…" />
            <div class="chart-skeleton" aria-hidden="true" />
          </Panel>
        ) : metrics.length === 0 && loaded ? (
          <Panel>
            <Empty>No readings in this range.</Empty>
          </Panel>
        ) : (
          loaded &&
          metrics.map((m) => {
            const s = series.current.get(m) ?? emptySeries();
            const n = s.x.length;
            return (
              <Panel
                key={`${m}/${gen}`}
                title={m}
                class="chart-panel"
                actions={
                  <span class="muted small">
                    {RES_LABEL[loaded.resolution]} windows · {n} {n === 1 ? 'point' : 'points'}
                    {loading ? ' · updating…' : ''}
                  </span>
                }
              >
                {n === 0 && <p class="muted small chart-note">No readings of {m} in this range yet.</p>}
                <TimeChart
                  series={s}
                  version={versions[m] ?? 0}
                  showP95={showP95}
                  from={chartFrom}
                  to={chartTo}
                  label={`${m} on ${id}: average with min–max band${showP95 ? ' and p95' : ''} in ${RES_LABEL[loaded.resolution]} windows; ${n} points`}
                />
              </Panel>
            );
          })
        )}
      </div>
    </div>
  );
}
