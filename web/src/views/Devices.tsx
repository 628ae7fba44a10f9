// The devices: searchable list with last seen, event count, metric names and latest values,
// kept current by the live feed (new devices appear, counts and values move).

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Empty, ErrorNote, Link, Loading, Panel } from '../components/ui';
import { api, ApiError } from '../lib/api';
import { formatCount, formatDateTime, formatRelative, formatValue } from '../lib/format';
import { useFrameBatch, useNow } from '../lib/hooks';
import { devicePath, useQueryState } from '../lib/router';
import { useApp } from '../lib/session';
import type { DeviceSummary, LatestMetric, Page, StoredEvent } from '../lib/types';
import { FirstEvent } from './Misc';

const SPEC = { q: '', sort: 'last_seen' };
const PAGE = 1000;
/** Latest values are read in one call when the listed devices hold at most this many series. */
const LATEST_MAX_SERIES = 20_000;

interface Row extends DeviceSummary {
  latest: Record<string, { value: number; time: string }>;
}

export function Devices() {
  const { live } = useApp();
  const [state, setState] = useQueryState(SPEC);
  const [rows, setRows] = useState<Map<string, Row> | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [latestNote, setLatestNote] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [search, setSearch] = useState(state.q);

  const load = async (after: string | null) => {
    setBusy(true);
    try {
      const page = await api<Page<DeviceSummary>>('/api/v1/devices', { query: { limit: PAGE, cursor: after } });
      const series = page.data.reduce((n, d) => n + d.metrics.length, 0);
      let latest: LatestMetric[] = [];
      if (after === null && series <= LATEST_MAX_SERIES && series > 0) {
        latest = (await api<{ data: LatestMetric[] }>('/api/v1/metrics/export', { query: { format: 'json' } })).data;
        setLatestNote(null);
      } else if (series > LATEST_MAX_SERIES) {
        setLatestNote('Latest values are shown on each device’s page (too many series to list them all here).');
      }
      setRows((prev) => {
        const next = new Map(after === null ? [] : prev ?? []);
        for (const d of page.data) next.set(d.device_id, { ...d, latest: next.get(d.device_id)?.latest ?? {} });
        for (const l of latest) {
          const r = next.get(l.device_id);
          if (r) r.latest[l.metric] = { value: l.value, time: l.time };
        }
        return next;
      });
      setCursor(page.next_cursor);
      setError(null);
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    void load(null);
  }, []);

  // Live events move the rows.
  const apply = useFrameBatch<StoredEvent>((events) => {
    setRows((prev) => {
      if (!prev) return prev;
      const next = new Map(prev);
      for (const e of events) {
        if (!e.device_id) continue;
        const old = next.get(e.device_id);
        const names = Object.keys(e.metrics ?? {});
        const row: Row = old
          ? { ...old, latest: { ...old.latest } }
          : { device_id: e.device_id, first_seen: e.time, last_seen: e.time, event_count: 0, metrics: [], latest: {} };
        row.event_count += 1;
        if (Date.parse(e.time) > Date.parse(row.last_seen)) row.last_seen = e.time;
        for (const n of names) {
          if (!row.metrics.includes(n)) row.metrics = [...row.metrics, n].sort();
          const v = e.metrics[n];
          const prevLatest = row.latest[n];
          if (v != null && (!prevLatest || Date.parse(e.time) >= Date.parse(prevLatest.time))) row.latest[n] = { value: v, time: e.time };
        }
        next.set(e.device_id, row);
      }
      return next;
    });
  }, 20_000);

  useEffect(() => live.subscribe({ channels: ['events'] }, (m) => m.type === 'event' && apply(m.data)), [live]);

  // The search box writes the URL shortly after typing stops.
  const written = useRef(state.q);
  useEffect(() => {
    if (search === state.q) return;
    const t = setTimeout(() => {
      written.current = search;
      setState({ q: search });
    }, 250);
    return () => clearTimeout(t);
  }, [search]);
  // The URL changed by other means (back/forward, a link): the box follows it.
  useEffect(() => {
    if (state.q !== written.current) {
      written.current = state.q;
      setSearch(state.q);
    }
  }, [state.q]);

  const now = useNow(5000);
  // The order is set when the list loads or the search or sort changes, not by live updates:
  // rows do not jump while they are read (new devices join at the top).
  const [order, setOrder] = useState<string[]>([]);
  const loadedCount = rows ? rows.size : -1;
  const sorted = useMemo(() => {
    if (!rows) return [];
    const q = state.q.trim().toLowerCase();
    const all = [...rows.values()].filter(
      (r) => !q || r.device_id.toLowerCase().includes(q) || r.metrics.some((m) => m.toLowerCase().includes(q)),
    );
    switch (state.sort) {
      case 'id':
        all.sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
        break;
      case 'events':
        all.sort((a, b) => b.event_count - a.event_count);
        break;
      default:
        all.sort((a, b) => Date.parse(b.last_seen) - Date.parse(a.last_seen));
    }
    return all.map((r) => r.device_id);
    // Re-sorted on load, search, sort and "load more" only.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [rows === null, cursor, state.q, state.sort]);
  useEffect(() => setOrder(sorted), [sorted]);
  const list = useMemo(() => {
    if (!rows) return [];
    const q = state.q.trim().toLowerCase();
    const known = new Set(order);
    const fresh: Row[] = [];
    for (const r of rows.values()) {
      if (!known.has(r.device_id) && (!q || r.device_id.toLowerCase().includes(q) || r.metrics.some((m) => m.toLowerCase().includes(q)))) fresh.push(r);
    }
    fresh.sort((a, b) => Date.parse(b.first_seen) - Date.parse(a.first_seen));
    const out = [...fresh];
    for (const id of order) {
      const r = rows.get(id);
      if (r) out.push(r);
    }
    return out;
  }, [rows, order, loadedCount, state.q]);

  return (
    <div class="page devices">
      <div class="page-head">
        <h1>Devices</h1>
        <div class="toolbar">
          <label class="search">
            <span class="sr-only">Search devices</span>
            <input
              type="search"
              placeholder="Search devices or metrics"
              value={search}
              onInput={(e) => setSearch(e.currentTarget.value)}
              aria-label="Search devices"
            />
          </label>
          <label class="inline">
            Sort{' '}
            <select value={state.sort} onChange={(e) => setState({ sort: e.currentTarget.value })} aria-label="Sort devices">
              <option value="last_seen">Last seen</option>
              <option value="id">Device id</option>
              <option value="events">Events</option>
            </select>
          </label>
        </div>
      </div>
      {error && <ErrorNote error={error} onRetry={() => void load(null)} />}
      {latestNote && <p class="muted small">{latestNote}</p>}
      <Panel>
        {rows === null ? (
          error ? null : <Loading rows={6} label="Loading devices…" />
        ) : rows.size === 0 ? (
          <>
            <Empty>No device has sent data yet.</Empty>
            <FirstEvent title="Add a device" intro="A device appears here as soon as an event with a device_id arrives, for example this reading:" />
          </>
        ) : list.length === 0 ? (
          <Empty>No device matches “{state.q}”.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="table devices-table">
              <caption class="sr-only">
                {formatCount(list.length)} devices{state.q ? ` matching ${state.q}` : ''}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Last seen</th>
                  <th scope="col" class="right">
                    Events
                  </th>
                  <th scope="col">Latest values</th>
                </tr>
              </thead>
              <tbody>
                {list.slice(0, 2000).map((r) => (
                  <tr key={r.device_id}>
                    <td>
                      <Link href={devicePath(r.device_id)}>{r.device_id}</Link>
                    </td>
                    <td class="nowrap" title={formatDateTime(r.last_seen)}>
                      {formatRelative(r.last_seen, now)}
                    </td>
                    <td class="num right">{formatCount(r.event_count)}</td>
                    <td>
                      {r.metrics.length === 0 ? (
                        <span class="muted">no metrics</span>
                      ) : (
                        <ul class="chips">
                          {r.metrics.slice(0, 8).map((m) => (
                            <li key={m}>
                              <span class="chip-name">{m}</span>
                              {r.latest[m] && <span class="chip-value num">{formatValue(r.latest[m].value)}</span>}
                            </li>
                          ))}
                          {r.metrics.length > 8 && <li class="muted">+{r.metrics.length - 8} more</li>}
                        </ul>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {list.length > 2000 && <p class="muted small">Showing 2,000 of {formatCount(list.length)}; narrow the search.</p>}
          </div>
        )}
        {cursor && (
          <p>
            <button type="button" class="btn" disabled={busy} onClick={() => void load(cursor)}>
              {busy ? 'Loading…' : 'Load more devices'}
            </button>
          </p>
        )}
      </Panel>
    </div>
  );
}
