// Product analytics: a funnel builder (steps by event type with an optional condition, a
// conversion window, a range and a breakdown), retention as a cohort × period heat map, and
// one user's timeline. Every question is in the URL, so a link re-asks it.

import { useEffect, useId, useMemo, useState } from 'preact/hooks';
import { Heatmap, LabelledBars, type HeatRow } from '../components/charts';
import { Empty, ErrorNote, Field, Loading, Panel } from '../components/ui';
import { api, ApiError } from '../lib/api';
import { formatClock, formatCount, formatDateTime, formatDay, formatDuration, formatPercent, formatRelative, formatUtcDay, formatValue } from '../lib/format';
import { useApi } from '../lib/hooks';
import { useQueryState } from '../lib/router';
import type { FunnelAnswer, FunnelStepAnswer, RetentionAnswer, TopAnswer, UserAnswer } from '../lib/types';

const SPEC = {
  tab: 'funnel',
  // Funnel.
  steps: [] as unknown[],
  window: '1d',
  frange: '7d',
  breakdown: '',
  // Retention.
  cohort: '',
  ret: '',
  period: 'day',
  periods: 14,
  // User.
  user: '',
  urange: '30d',
};

const RANGES = ['24h', '7d', '30d', '90d'];

export function Analytics() {
  const [state, setState] = useQueryState(SPEC);
  const types = useApi(() => api<TopAnswer>('/api/v1/analytics/top', { query: { dimension: 'type', limit: 200, from: '-90d' } }), []);
  const typeNames = useMemo(() => (types.data ? types.data.data.map((t) => String(t.value)) : []), [types.data]);
  const listId = useId();
  const tab = state.tab === 'retention' || state.tab === 'user' ? state.tab : 'funnel';
  const tabs: [string, string][] = [
    ['funnel', 'Funnel'],
    ['retention', 'Retention'],
    ['user', 'User timeline'],
  ];
  return (
    <div class="page analytics">
      <div class="page-head">
        <h1>Analytics</h1>
        <div class="tabs" role="tablist" aria-label="Analytics">
          {tabs.map(([t, label]) => (
            <button key={t} type="button" role="tab" id={`tab-${t}`} aria-selected={tab === t} aria-controls={`panel-${t}`} onClick={() => setState({ tab: t })}>
              {label}
            </button>
          ))}
        </div>
      </div>
      <datalist id={listId}>
        {typeNames.map((t) => (
          <option key={t} value={t} />
        ))}
      </datalist>
      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`}>
        {tab === 'funnel' && <Funnel state={state} setState={setState} listId={listId} types={typeNames} />}
        {tab === 'retention' && <Retention state={state} setState={setState} listId={listId} types={typeNames} />}
        {tab === 'user' && <UserTimeline state={state} setState={setState} />}
      </div>
    </div>
  );
}

type State = typeof SPEC;
type SetState = (c: Partial<State>) => void;

// ---- Funnel ----

type CondField = '' | 'page_url' | 'source' | 'device_id' | 'user_id' | 'property';

export interface StepDraft {
  type: string;
  field: CondField;
  prop: string;
  value: string;
}

const BUILTIN = new Set(['page_url', 'source', 'device_id', 'user_id']);

/** A step as the API (and the URL) takes it: the type, or `{type, where: {field: value}}`. */
export function stepToApi(s: StepDraft): string | { type: string; where: Record<string, string> } {
  const key = s.field === 'property' ? s.prop.trim() : s.field;
  if (!key || !s.value.trim()) return s.type.trim();
  return { type: s.type.trim(), where: { [key]: s.value.trim() } };
}

export function stepFromApi(v: unknown): StepDraft {
  if (typeof v === 'string') return { type: v, field: '', prop: '', value: '' };
  if (v && typeof v === 'object') {
    const o = v as { type?: unknown; where?: Record<string, unknown> };
    const type = typeof o.type === 'string' ? o.type : '';
    const entry = o.where ? Object.entries(o.where)[0] : undefined;
    if (!entry) return { type, field: '', prop: '', value: '' };
    const [k, val] = entry;
    const value = typeof val === 'string' ? val : JSON.stringify(val);
    return BUILTIN.has(k) ? { type, field: k as CondField, prop: '', value } : { type, field: 'property', prop: k, value };
  }
  return { type: '', field: '', prop: '', value: '' };
}

function Funnel({ state, setState, listId, types }: { state: State; setState: SetState; listId: string; types: string[] }) {
  const initial = state.steps.length ? state.steps.map(stepFromApi) : [blankStep(), blankStep()];
  const [steps, setSteps] = useState<StepDraft[]>(initial);
  const [windowText, setWindowText] = useState(state.window);
  const [range, setRange] = useState(state.frange);
  const [breakdown, setBreakdown] = useState(state.breakdown);
  const [result, setResult] = useState<FunnelAnswer | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const run = async (drafts: StepDraft[], win: string, rng: string, bd: string, push = true) => {
    const apiSteps = drafts.filter((s) => s.type.trim()).map(stepToApi);
    if (apiSteps.length === 0) {
      setError(new ApiError(400, { error: 'invalid_funnel', message: 'Give at least one step an event type.' }));
      return;
    }
    if (push) setState({ steps: apiSteps, window: win, frange: rng, breakdown: bd });
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { steps: apiSteps, window: win.trim() || '1d', from: `-${rng}`, to: 'now' };
      if (bd.trim()) body.breakdown = bd.trim();
      setResult(await api<FunnelAnswer>('/api/v1/analytics/funnel', { method: 'POST', body }));
    } catch (e) {
      setError(e as ApiError);
      setResult(null);
    } finally {
      setBusy(false);
    }
  };

  // A link with steps asks its question on arrival.
  useEffect(() => {
    if (state.steps.length) void run(state.steps.map(stepFromApi), state.window, state.frange, state.breakdown, false);
  }, []);

  const update = (i: number, change: Partial<StepDraft>) => setSteps((s) => s.map((x, j) => (j === i ? { ...x, ...change } : x)));

  return (
    <>
      <Panel title="Funnel">
        <form
          class="funnel-form"
          onSubmit={(e) => {
            e.preventDefault();
            void run(steps, windowText, range, breakdown);
          }}
        >
          <ol class="funnel-steps">
            {steps.map((s, i) => (
              <li key={i} class="funnel-step">
                <span class="step-no" aria-hidden="true">
                  {i + 1}
                </span>
                <label>
                  <span class="sr-only">Step {i + 1} event type</span>
                  <input list={listId} value={s.type} placeholder={types[i] ? `e.g. ${types[i]}` : 'event type'} aria-label={`Step ${i + 1} event type`} onInput={(e) => update(i, { type: e.currentTarget.value })} />
                </label>
                <label>
                  <span class="sr-only">Step {i + 1} condition field</span>
                  <select value={s.field} aria-label={`Step ${i + 1} condition field`} onChange={(e) => update(i, { field: e.currentTarget.value as CondField })}>
                    <option value="">no condition</option>
                    <option value="page_url">page_url =</option>
                    <option value="source">source =</option>
                    <option value="device_id">device_id =</option>
                    <option value="user_id">user_id =</option>
                    <option value="property">property…</option>
                  </select>
                </label>
                {s.field === 'property' && (
                  <input value={s.prop} placeholder="property" aria-label={`Step ${i + 1} property name`} onInput={(e) => update(i, { prop: e.currentTarget.value })} />
                )}
                {s.field && <input value={s.value} placeholder="value" aria-label={`Step ${i + 1} condition value`} onInput={(e) => update(i, { value: e.currentTarget.value })} />}
                <button type="button" class="btn small ghost" aria-label={`Remove step ${i + 1}`} disabled={steps.length <= 1} onClick={() => setSteps((x) => x.filter((_, j) => j !== i))}>
                  Remove
                </button>
              </li>
            ))}
          </ol>
          <div class="row">
            <button type="button" class="btn small" disabled={steps.length >= 16} onClick={() => setSteps((x) => [...x, blankStep()])}>
              Add step
            </button>
          </div>
          <div class="form-grid">
            <Field label="Conversion window" hint="e.g. 30m, 1h, 1d" error={error?.fieldError('window')}>
              {({ id, describedBy, invalid }) => <input id={id} value={windowText} onInput={(e) => setWindowText(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
            </Field>
            <Field label="Entries in the last">
              {({ id }) => (
                <select id={id} value={range} onChange={(e) => setRange(e.currentTarget.value)}>
                  {RANGES.map((r) => (
                    <option key={r} value={r}>
                      {r}
                    </option>
                  ))}
                </select>
              )}
            </Field>
            <Field label="Breakdown" hint="type, source, device_id, user_id, page_url or property:KEY" error={error?.fieldError('breakdown')}>
              {({ id, describedBy, invalid }) => (
                <input id={id} value={breakdown} placeholder="none" onInput={(e) => setBreakdown(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />
              )}
            </Field>
          </div>
          <div class="row">
            <button type="submit" class="btn primary" disabled={busy}>
              {busy ? 'Running…' : 'Run funnel'}
            </button>
          </div>
        </form>
      </Panel>
      {error && <ErrorNote error={error} />}
      {busy && !result && <Loading label="Running the funnel…" />}
      {result && <FunnelResult r={result} />}
    </>
  );
}

function blankStep(type = ''): StepDraft {
  return { type, field: '', prop: '', value: '' };
}

function stepLabel(s: FunnelStepAnswer): string {
  const where = s.where ? Object.entries(s.where).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`) : [];
  return `${s.step}. ${s.type}${where.length ? ` (${where.join(', ')})` : ''}`;
}

function FunnelResult({ r }: { r: FunnelAnswer }) {
  const first = r.steps[0]?.users ?? 0;
  const last = r.steps[r.steps.length - 1];
  return (
    <Panel
      title="Conversion"
      class="funnel-result"
      actions={
        <span class="muted small">
          {formatDateTime(r.from)} – {formatDateTime(r.to)} · window {formatDuration(r.window_seconds)}
        </span>
      }
    >
      {first === 0 ? (
        <Empty>No user entered the funnel in this range.</Empty>
      ) : (
        <>
          <p class="funnel-summary">
            <strong class="num">{formatPercent(last?.conversion_from_first ?? 0)}</strong> of {formatCount(first)} users who did{' '}
            <code>{r.steps[0].type}</code> went on to <code>{last?.type}</code>.
          </p>
          <LabelledBars
            label="Users per funnel step"
            max={first}
            items={r.steps.map((s, i) => ({
              label: stepLabel(s),
              value: s.users,
              tone: `step${i % 4}`,
              note:
                i === 0
                  ? 'entered'
                  : `${formatPercent(s.conversion_from_previous)} of previous · ${formatPercent(s.conversion_from_first)} of first`,
            }))}
          />
          <div class="table-wrap">
            <table class="table compact">
              <caption class="sr-only">Funnel steps</caption>
              <thead>
                <tr>
                  <th scope="col">Step</th>
                  <th scope="col" class="right">
                    Users
                  </th>
                  <th scope="col" class="right">
                    From previous
                  </th>
                  <th scope="col" class="right">
                    From first
                  </th>
                  <th scope="col" class="right">
                    Dropped
                  </th>
                  <th scope="col" class="right">
                    Median time to reach
                  </th>
                </tr>
              </thead>
              <tbody>
                {r.steps.map((s) => (
                  <tr key={s.step}>
                    <td>{stepLabel(s)}</td>
                    <td class="num right">{formatCount(s.users)}</td>
                    <td class="num right">{formatPercent(s.conversion_from_previous)}</td>
                    <td class="num right">{formatPercent(s.conversion_from_first)}</td>
                    <td class="num right">{s.dropped == null ? '—' : formatCount(s.dropped)}</td>
                    <td class="num right">{formatDuration(s.median_seconds_to_convert)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {r.breakdown && (
        <div class="breakdown">
          <h3>
            By <code>{r.breakdown.field}</code>
          </h3>
          {r.breakdown.groups.length === 0 ? (
            <Empty>No groups.</Empty>
          ) : (
            <div class="table-wrap">
              <table class="table compact">
                <caption class="sr-only">Funnel by {r.breakdown.field}</caption>
                <thead>
                  <tr>
                    <th scope="col">{r.breakdown.field}</th>
                    {r.steps.map((s) => (
                      <th scope="col" class="right" key={s.step}>
                        {s.step}. {s.type}
                      </th>
                    ))}
                    <th scope="col" class="right">
                      Conversion
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {r.breakdown.groups.map((g, i) => (
                    <tr key={i}>
                      <td>{g.value == null ? <span class="muted">(none)</span> : String(g.value)}</td>
                      {g.steps.map((s) => (
                        <td class="num right" key={s.step}>
                          {formatCount(s.users)}
                        </td>
                      ))}
                      <td class="num right">{formatPercent(g.steps[g.steps.length - 1]?.conversion_from_first)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {r.breakdown.omitted_groups > 0 && <p class="muted small">{formatCount(r.breakdown.omitted_groups)} smaller groups not shown.</p>}
            </div>
          )}
        </div>
      )}
    </Panel>
  );
}

// ---- Retention ----

function Retention({ state, setState, listId, types }: { state: State; setState: SetState; listId: string; types: string[] }) {
  const [cohort, setCohort] = useState(state.cohort);
  const [ret, setRet] = useState(state.ret);
  const [period, setPeriod] = useState(state.period === 'week' ? 'week' : 'day');
  const [periods, setPeriods] = useState(String(state.periods));
  const [result, setResult] = useState<RetentionAnswer | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const run = async (c: string, r: string, p: string, n: string, push = true) => {
    if (!c.trim() || !r.trim()) {
      setError(new ApiError(400, { error: 'invalid_retention', message: 'Name the cohort event and the return event.' }));
      return;
    }
    const count = Number(n);
    if (push) setState({ cohort: c.trim(), ret: r.trim(), period: p, periods: Number.isFinite(count) ? count : 14 });
    setBusy(true);
    setError(null);
    try {
      setResult(
        await api<RetentionAnswer>('/api/v1/analytics/retention', {
          method: 'POST',
          body: { cohort: c.trim(), return: r.trim(), period: p, periods: Number.isFinite(count) && count > 0 ? count : undefined },
        }),
      );
    } catch (e) {
      setError(e as ApiError);
      setResult(null);
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    if (state.cohort && state.ret) void run(state.cohort, state.ret, state.period, String(state.periods), false);
  }, []);

  return (
    <>
      <Panel title="Retention">
        <form
          class="form-grid"
          onSubmit={(e) => {
            e.preventDefault();
            void run(cohort, ret, period, periods);
          }}
        >
          <Field label="Cohort event" hint="A user's first one puts them in its period's cohort">
            {({ id, describedBy }) => <input id={id} list={listId} value={cohort} placeholder={types[0] ? `e.g. ${types[0]}` : 'event type'} onInput={(e) => setCohort(e.currentTarget.value)} aria-describedby={describedBy} />}
          </Field>
          <Field label="Return event">
            {({ id }) => <input id={id} list={listId} value={ret} placeholder={types[0] ? `e.g. ${types[0]}` : 'event type'} onInput={(e) => setRet(e.currentTarget.value)} />}
          </Field>
          <Field label="Period">
            {({ id }) => (
              <select id={id} value={period} onChange={(e) => setPeriod(e.currentTarget.value)}>
                <option value="day">day</option>
                <option value="week">week</option>
              </select>
            )}
          </Field>
          <Field label="Periods" hint="1 to 366" error={error?.fieldError('periods')}>
            {({ id, describedBy, invalid }) => <input id={id} inputMode="numeric" value={periods} onInput={(e) => setPeriods(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
          </Field>
          <div class="row">
            <button type="submit" class="btn primary" disabled={busy}>
              {busy ? 'Running…' : 'Show retention'}
            </button>
          </div>
        </form>
      </Panel>
      {error && <ErrorNote error={error} />}
      {busy && !result && <Loading label="Computing retention…" />}
      {result && <RetentionResult r={result} />}
    </>
  );
}

export function retentionRows(r: RetentionAnswer): { rows: HeatRow[]; columns: string[] } {
  const n = Math.max(0, ...r.cohorts.map((c) => c.retention.length), r.average.length);
  const columns = Array.from({ length: n }, (_, i) => `${r.period === 'week' ? 'W' : 'D'}${i}`);
  const rows: HeatRow[] = r.cohorts.map((c) => ({
    label: formatUtcDay(c.start),
    sub: `${formatCount(c.users)} users`,
    cells: columns.map((_, i) => {
      const x = c.retention.find((p) => p.period === i);
      return x ? { share: x.share, users: x.users } : null;
    }),
  }));
  if (r.average.length) {
    rows.push({
      label: 'Average',
      sub: 'weighted by size',
      cells: columns.map((_, i) => {
        const x = r.average.find((p) => p.period === i);
        return x ? { share: x.share, users: x.cohorts } : null;
      }),
    });
  }
  return { rows, columns };
}

function RetentionResult({ r }: { r: RetentionAnswer }) {
  const { rows, columns } = retentionRows(r);
  return (
    <Panel
      title={`Cohorts by ${r.period}`}
      actions={
        <span class="muted small">
          first <code>{r.cohort.type}</code> → returned with <code>{r.return.type}</code> · {formatUtcDay(r.from)} – {formatUtcDay(r.to)} (UTC)
        </span>
      }
    >
      {r.cohorts.length === 0 ? (
        <Empty>No user did a first “{r.cohort.type}” in this range.</Empty>
      ) : (
        <Heatmap rows={rows} columns={columns} label={`Retention heat map: ${r.cohorts.length} ${r.cohorts.length === 1 ? 'cohort' : 'cohorts'} by ${r.period}, ${columns.length} periods`} />
      )}
    </Panel>
  );
}

// ---- User timeline ----

function UserTimeline({ state, setState }: { state: State; setState: SetState }) {
  const [input, setInput] = useState(state.user);
  useEffect(() => setInput(state.user), [state.user]);
  const user = useApi(
    () => (state.user ? api<UserAnswer>(`/api/v1/analytics/users/${encodeURIComponent(state.user)}`, { query: { from: `-${state.urange}` } }) : null),
    [state.user, state.urange],
  );
  const u = user.data;
  return (
    <>
      <Panel title="User timeline">
        <form
          class="form-grid"
          onSubmit={(e) => {
            e.preventDefault();
            setState({ user: input.trim() });
          }}
        >
          <Field label="User id">
            {({ id }) => <input id={id} value={input} onInput={(e) => setInput(e.currentTarget.value)} autoComplete="off" />}
          </Field>
          <Field label="In the last">
            {({ id }) => (
              <select id={id} value={state.urange} onChange={(e) => setState({ urange: e.currentTarget.value })}>
                {RANGES.map((r) => (
                  <option key={r} value={r}>
                    {r}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <div class="row">
            <button type="submit" class="btn primary">
              Show user
            </button>
          </div>
        </form>
      </Panel>
      {!state.user ? null : user.loading ? (
        <Loading label="Loading the user…" />
      ) : user.error ? (
        user.error.status === 404 ? (
          <Empty>
            No events of user <code>{state.user}</code> in the last {state.urange}.
          </Empty>
        ) : (
          <ErrorNote error={user.error} onRetry={user.reload} />
        )
      ) : u ? (
        <div class="grid two">
          <Panel title={`User ${u.user_id}`}>
            <dl class="facts">
              <div>
                <dt>First seen</dt>
                <dd title={formatDateTime(u.first_seen)}>{formatRelative(u.first_seen)}</dd>
              </div>
              <div>
                <dt>Last seen</dt>
                <dd title={formatDateTime(u.last_seen)}>{formatRelative(u.last_seen)}</dd>
              </div>
              <div>
                <dt>Events</dt>
                <dd class="num">{formatCount(u.events)}</dd>
              </div>
              <div>
                <dt>Sessions</dt>
                <dd class="num">
                  {formatCount(u.session_count)} <span class="muted small">(gap {formatDuration(u.session_gap_seconds)})</span>
                </dd>
              </div>
            </dl>
            <h3>Events by type</h3>
            <LabelledBars label="The user's events by type" items={u.by_type.map((t) => ({ label: String(t.value), value: t.count }))} />
            {u.pages.length > 0 && (
              <>
                <h3>Pages</h3>
                <LabelledBars label="The user's pages" items={u.pages.map((t) => ({ label: String(t.value), value: t.count }))} />
              </>
            )}
          </Panel>
          <Panel title="Sessions and recent events">
            {u.sessions.length > 0 && (
              <ul class="sessions">
                {u.sessions.map((s, i) => (
                  <li key={i}>
                    <span class="num">{formatDateTime(s.start)}</span> · {formatDuration(s.duration_seconds)} · {formatCount(s.events)} events
                  </li>
                ))}
              </ul>
            )}
            <h3>Recent events</h3>
            <ol class="timeline">
              {u.recent_events.map((e) => (
                <li key={`${e.event_id}/${e.received_at}`}>
                  <time dateTime={e.time} title={formatDateTime(e.time)}>
                    {formatDay(e.time)} {formatClock(e.time)}
                  </time>{' '}
                  <code>{e.type}</code>
                  {e.page_url && <> · {e.page_url}</>}
                  {e.device_id && <> · {e.device_id}</>}
                  {Object.entries(e.metrics ?? {}).map(([k, v]) => (
                    <span key={k}>
                      {' '}
                      · {k}={formatValue(v)}
                    </span>
                  ))}
                </li>
              ))}
            </ol>
          </Panel>
        </div>
      ) : null}
    </>
  );
}
