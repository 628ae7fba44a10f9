// The overview: live events per second, the range's totals against the previous period,
// events by type, top pages, open alerts, pipeline health and a live tail of events. All but
// the live parts come from one call, `GET /api/v1/overview`, polled while the page is open.

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Doughnut, LabelledBars, Sparkline } from '../components/charts';
import { Badge, Empty, ErrorNote, Link, Loading, Panel, RangePicker, Stat } from '../components/ui';
import { api, type ApiError } from '../lib/api';
import { formatClock, formatCompact, formatCount, formatPercent, formatRate, formatRelative, formatValue } from '../lib/format';
import { useApi, useFrameBatch, useNow, useThrottled } from '../lib/hooks';
import { resolveRange, toApiTime, type RangeName } from '../lib/range';
import { devicePath, useQueryState } from '../lib/router';
import { RateCounter } from '../lib/series';
import { useApp } from '../lib/session';
import type { OverviewAnswer, Page, PeriodSummary, StoredEvent } from '../lib/types';
import { FirstEvent } from './Misc';

const SPEC = { range: '24h', from: '', to: '' };
const TAIL = 50;
/** Length of the top lists (event types, pages) and open alerts listed. */
const TOP = 10;
const ALERTS = 5;
/** How often the overview is asked again while the page is visible. */
const POLL_MS = 10_000;

function rangeQuery(r: { from: number; to: number } | null, name: RangeName) {
  if (!r) return null;
  if (name !== 'custom') return { from: `-${name}` };
  return { from: toApiTime(r.from), to: toApiTime(r.to) };
}

export function Overview() {
  const { live } = useApp();
  const [state, setState] = useQueryState(SPEC);
  const range = state.range as RangeName;
  const resolved = resolveRange({ range, from: state.from, to: state.to }, Date.now());
  const q = rangeQuery(resolved, range);
  const qKey = JSON.stringify(q);

  // Everything but the live parts in one answer: the summary, open alerts, pipeline health.
  const overview = useApi(
    () => (q ? api<OverviewAnswer>('/api/v1/overview', { query: { ...q, top: TOP, alerts: ALERTS } }) : null),
    [qKey],
    POLL_MS,
  );
  const summary = overview.data?.summary;

  // Whether the tenant has any event at all (asked only when the range has none).
  const noEventsInRange = summary && summary.current.events === 0 && summary.previous.events === 0;
  const anyEvent = useApi(() => (noEventsInRange ? api<Page<StoredEvent>>('/api/v1/events', { query: { limit: 1 } }) : null), [!!noEventsInRange]);
  const firstStart = noEventsInRange && anyEvent.data && anyEvent.data.data.length === 0;

  // Live: events (rate and tail) and alerts.
  const counter = useRef(new RateCounter(120));
  const [tail, setTail] = useState<StoredEvent[]>([]);
  const [paused, setPaused] = useState(false);
  const pausedRef = useRef(false);
  pausedRef.current = paused;
  const held = useRef<StoredEvent[]>([]);
  const [missed, setMissed] = useState(0);
  const [seen, setSeen] = useState(0);
  // A new alert, or the first events of a first start: ask again soon, at most once a second.
  const reloadOverview = useThrottled(overview.reload, 1000);

  const push = useFrameBatch<StoredEvent>((items) => {
    setSeen((n) => n + items.length);
    if (pausedRef.current) {
      held.current = [...items.slice(-TAIL).reverse(), ...held.current].slice(0, TAIL);
      setMissed((n) => n + items.length);
      return;
    }
    setTail((t) => [...items.slice(-TAIL).reverse(), ...t].slice(0, TAIL));
  }, TAIL * 4);

  // The tail starts with the newest stored events; live ones go on top.
  useEffect(() => {
    let stop = false;
    api<Page<StoredEvent>>('/api/v1/events/recent', { query: { limit: TAIL } }).then(
      (p) => {
        if (stop) return;
        setTail((t) => {
          const seen = new Set(t.map((e) => `${e.event_id}/${e.received_at}`));
          return [...t, ...p.data.filter((e) => !seen.has(`${e.event_id}/${e.received_at}`))].slice(0, TAIL);
        });
      },
      () => {
        // The live feed fills the tail anyway.
      },
    );
    return () => {
      stop = true;
    };
  }, []);

  useEffect(
    () =>
      live.subscribe({ channels: ['events', 'alerts'] }, (m) => {
        if (m.type === 'event') {
          counter.current.add(Date.now());
          push(m.data);
        } else if (m.type === 'alert') {
          reloadOverview();
        }
      }),
    [live],
  );

  // The first events of a first start: show the dashboard without waiting for a poll.
  useEffect(() => {
    if (firstStart && seen > 0) {
      reloadOverview();
      anyEvent.reload();
    }
  }, [firstStart, seen > 0]);

  const now = useNow(1000);
  const rate = counter.current.rate(now, 5);
  const hist = counter.current.history(now, 60);

  const resume = () => {
    setPaused(false);
    setTail((t) => [...held.current, ...t].slice(0, TAIL));
    held.current = [];
    setMissed(0);
  };

  const cur = summary?.current;
  const change = summary?.change;
  const byType = useMemo(() => (cur ? cur.by_type.map((v) => ({ label: String(v.value ?? '(none)'), value: v.count })) : []), [cur]);
  const pages = useMemo(() => (cur ? topPages(cur) : []), [cur]);
  const alerts = overview.data?.open_alerts;
  const failed = overview.error && !overview.data ? overview.error : null;

  return (
    <div class="page overview">
      <div class="page-head">
        <h1>Overview</h1>
        <RangePicker value={{ range, from: state.from, to: state.to }} onChange={(r) => setState(r)} />
      </div>

      {firstStart && <FirstEvent />}
      {!resolved && <ErrorNote error={new Error('The custom range is not valid: its start must be before its end.')} />}

      <div class="stats">
        <div class="stat live-rate">
          <div class="stat-label">Live events / s</div>
          <div class="stat-value num" aria-live="off" data-testid="live-rate">
            {formatRate(rate)}
          </div>
          <Sparkline values={hist.y} label={`Events per second over the last minute; now ${formatRate(rate)}`} />
        </div>
        {failed ? (
          <div class="stat wide">
            <ErrorNote error={failed} onRetry={overview.reload} />
          </div>
        ) : (
          <>
            <Stat label="Events" value={cur ? formatCount(cur.events) : '…'} change={cur ? change?.events : undefined} />
            <Stat label="Devices" value={cur ? formatCount(cur.devices) : '…'} change={cur ? change?.devices : undefined} />
            <Stat label="Users" value={cur ? formatCount(cur.users) : '…'} change={cur ? change?.users : undefined} />
            <Stat
              label="Errors"
              value={cur ? `${formatCount(cur.errors)} · ${formatPercent(cur.error_rate)}` : '…'}
              change={cur ? change?.errors : undefined}
              invert
            />
          </>
        )}
      </div>

      <div class="grid two">
        <Panel title="Events by type">
          {overview.loading ? (
            <Loading rows={4} />
          ) : failed ? (
            <ErrorNote error={failed} />
          ) : byType.length === 0 ? (
            <Empty>No events in this range.</Empty>
          ) : (
            <Doughnut items={byType} label={`Events by type: ${byType.map((b) => `${b.label} ${formatCount(b.value)}`).join(', ')}`} />
          )}
        </Panel>
        <Panel title="Top pages">
          {overview.loading ? (
            <Loading rows={4} />
          ) : failed ? (
            <ErrorNote error={failed} />
          ) : pages.length === 0 ? (
            <Empty>No page views in this range (events with a page_url).</Empty>
          ) : (
            <LabelledBars
              label="Top pages by events"
              items={pages.map((p) => ({ label: p.label, value: p.count, note: `${formatPercent(p.share)} of events · ${formatCompact(p.users)} users` }))}
            />
          )}
        </Panel>
      </div>

      <div class="grid two">
        <Panel title="Open alerts" actions={<Link href="/alerts?status=open">All alerts</Link>}>
          {overview.loading ? (
            <Loading rows={3} />
          ) : failed ? (
            <ErrorNote error={failed} />
          ) : !alerts || alerts.data.length === 0 ? (
            <Empty>No open alerts.</Empty>
          ) : (
            <>
              <ul class="alert-mini">
                {alerts.data.map((a) => (
                  <li key={a.id}>
                    <Badge tone={a.severity}>{a.severity}</Badge>
                    <span class="grow">{a.message}</span>
                    <span class="muted small" title={a.last_triggered_at}>
                      {formatRelative(a.last_triggered_at, now)}
                    </span>
                  </li>
                ))}
              </ul>
              {alerts.total > alerts.data.length && <p class="muted small">{formatCount(alerts.total)} open in all.</p>}
            </>
          )}
        </Panel>
        <Panel title="Pipeline health">
          <Health pipeline={overview.data?.pipeline} error={overview.error} loading={overview.loading} />
        </Panel>
      </div>

      <Panel
        title="Live tail"
        class="tail-panel"
        actions={
          <>
            {paused && missed > 0 && <span class="muted small">{formatCount(missed)} new while paused</span>}
            <button type="button" class="btn small" aria-pressed={paused} onClick={() => (paused ? resume() : setPaused(true))}>
              {paused ? 'Resume' : 'Pause'}
            </button>
          </>
        }
      >
        {tail.length === 0 ? (
          <Empty>No events yet. New events appear here as they are stored.</Empty>
        ) : (
          <div class="table-wrap tail">
            <table class="table">
              <caption class="sr-only">The newest events, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Type</th>
                  <th scope="col">Device / user</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {tail.map((e) => (
                  <tr key={`${e.event_id}/${e.received_at}`}>
                    <td class="num nowrap">{formatClock(e.time)}</td>
                    <td>
                      <code>{e.type}</code>
                    </td>
                    <td class="ellipsis">
                      {e.device_id ? <Link href={devicePath(e.device_id)}>{e.device_id}</Link> : e.user_id ?? <span class="muted">—</span>}
                    </td>
                    <td class="ellipsis">{eventDetails(e)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Panel>
    </div>
  );
}

function eventDetails(e: StoredEvent): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(e.metrics ?? {})) parts.push(`${k}=${formatValue(v)}`);
  if (e.page_url) parts.push(e.page_url);
  for (const [k, v] of Object.entries(e.properties ?? {}).slice(0, 3)) parts.push(`${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return parts.join('  ') || '—';
}

/** The top pages of a period, each with its share of the period's events. */
export function topPages(p: Pick<PeriodSummary, 'events' | 'top_pages'>): { label: string; count: number; users: number; share: number }[] {
  return p.top_pages
    .filter((v) => v.value !== null && v.value !== '')
    .map((v) => ({ label: String(v.value), count: v.count, users: v.users, share: p.events > 0 ? v.count / p.events : 0 }));
}

function Health({ pipeline, error, loading }: { pipeline?: OverviewAnswer['pipeline']; error: ApiError | null; loading: boolean }) {
  if (loading) return <Loading rows={3} />;
  if (!pipeline) {
    return (
      <dl class="health">
        <div>
          <dt>Ingest</dt>
          <dd>{error?.status === 0 ? <Badge tone="critical">unreachable</Badge> : error ? <ErrorNote error={error} /> : '…'}</dd>
        </div>
      </dl>
    );
  }
  const { lag } = pipeline;
  return (
    <dl class="health">
      <div>
        <dt>Ingest</dt>
        <dd>
          {error?.status === 0 ? (
            <Badge tone="critical">unreachable</Badge>
          ) : (
            <Badge tone={pipeline.ready ? 'ok' : 'critical'}>{pipeline.ready ? 'accepting' : 'not ready'}</Badge>
          )}{' '}
          <span class="muted small">
            log {pipeline.log}
            {pipeline.reason ? ` — ${pipeline.reason}` : ''}
          </span>
        </dd>
      </div>
      <div>
        <dt>Queries behind the log</dt>
        <dd>
          <LagValue n={lag.store.lag} /> <span class="muted small">records (store)</span>
        </dd>
      </div>
      <div>
        <dt>Rollups and alerts behind</dt>
        <dd>
          <LagValue n={lag.stream.lag} /> <span class="muted small">records (stream)</span>
        </dd>
      </div>
      {lag.consumers.map((c) => (
        <div key={c.name}>
          <dt>
            Consumer <code>{c.name}</code>
          </dt>
          <dd>
            <span class="num">{formatCount(c.lag)}</span> <span class="muted small">records not yet committed</span>
          </dd>
        </div>
      ))}
      <div>
        <dt>Log end</dt>
        <dd class="num">{formatCount(lag.end_offset)}</dd>
      </div>
    </dl>
  );
}

function LagValue({ n }: { n: number }) {
  const tone = n > 100_000 ? 'critical' : n > 1000 ? 'warning' : 'ok';
  return <Badge tone={tone}>{formatCount(n)}</Badge>;
}
