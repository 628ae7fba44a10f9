// Alerts (by status, severity, device; new ones arrive live; acknowledge or resolve with a
// note) and the rules that open them (listed, created, edited, deleted; the server's
// validation errors shown at their fields).

import { useEffect, useRef, useState } from 'preact/hooks';
import { Badge, Empty, ErrorNote, Field, Link, Loading, Panel } from '../components/ui';
import { api, ApiError } from '../lib/api';
import { formatCount, formatDateTime, formatRelative, formatValue } from '../lib/format';
import { useApi, useNow, useThrottled } from '../lib/hooks';
import { devicePath, useQueryState } from '../lib/router';
import { hasScope, useApp } from '../lib/session';
import type { Alert, AlertList, LiveAlert, Rule, RuleKindName, Severity } from '../lib/types';

const SPEC = { tab: 'alerts', status: 'open', severity: '', device: '' };

export function Alerts() {
  const [state, setState] = useQueryState(SPEC);
  return (
    <div class="page alerts">
      <div class="page-head">
        <h1>Alerts</h1>
        <div class="tabs" role="tablist" aria-label="Alerts and rules">
          <button type="button" role="tab" id="tab-alerts" aria-selected={state.tab !== 'rules'} aria-controls="panel-alerts" onClick={() => setState({ tab: 'alerts' })}>
            Alerts
          </button>
          <button type="button" role="tab" id="tab-rules" aria-selected={state.tab === 'rules'} aria-controls="panel-rules" onClick={() => setState({ tab: 'rules' })}>
            Rules
          </button>
        </div>
      </div>
      {state.tab === 'rules' ? (
        <div role="tabpanel" id="panel-rules" aria-labelledby="tab-rules">
          <Rules />
        </div>
      ) : (
        <div role="tabpanel" id="panel-alerts" aria-labelledby="tab-alerts">
          <AlertsList status={state.status} severity={state.severity} device={state.device} onFilter={(f) => setState(f)} />
        </div>
      )}
    </div>
  );
}

function matches(a: Alert, f: { status: string; severity: string; device: string }): boolean {
  return (!f.status || a.status === f.status) && (!f.severity || a.severity === f.severity) && (!f.device || a.device_id === f.device);
}

function AlertsList({ status, severity, device, onFilter }: { status: string; severity: string; device: string; onFilter: (f: Partial<typeof SPEC>) => void }) {
  const { live, session } = useApp();
  const canWrite = hasScope(session.who, 'write');
  const list = useApi(() => api<AlertList>('/api/v1/alerts', { query: { status, severity, device_id: device, limit: 200 } }), [status, severity, device], 60_000);
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const [deviceInput, setDeviceInput] = useState(device);
  useEffect(() => setDeviceInput(device), [device]);
  const filters = useRef({ status, severity, device });
  filters.current = { status, severity, device };
  const resync = useThrottled(list.reload, 2000);

  useEffect(
    () =>
      live.subscribe({ channels: ['alerts'] }, (m) => {
        if (m.type !== 'alert') return;
        const a: LiveAlert = m.data;
        const { event: _ev, ...alert } = a;
        void _ev;
        list.mutate((d) => {
          if (!d) return d;
          const i = d.data.findIndex((x) => x.id === alert.id);
          const keep = matches(alert, filters.current);
          const data = [...d.data];
          let total = d.total;
          if (i >= 0) {
            if (keep) data[i] = alert;
            else {
              data.splice(i, 1);
              total = Math.max(0, total - 1);
            }
          } else if (keep) {
            data.unshift(alert);
            total += 1;
          }
          return { ...d, data, total };
        });
        if (a.event === 'opened') setFresh((s) => new Set(s).add(a.id));
        // The page re-reads shortly after, so order and totals follow the server.
        resync();
      }),
    [live],
  );

  const now = useNow(5000);
  return (
    <>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          onFilter({ device: deviceInput.trim() });
        }}
      >
        <label class="inline">
          Status{' '}
          <select value={status} onChange={(e) => onFilter({ status: e.currentTarget.value })}>
            <option value="">Any</option>
            <option value="open">Open</option>
            <option value="acknowledged">Acknowledged</option>
            <option value="resolved">Resolved</option>
          </select>
        </label>
        <label class="inline">
          Severity{' '}
          <select value={severity} onChange={(e) => onFilter({ severity: e.currentTarget.value })}>
            <option value="">Any</option>
            <option value="critical">Critical</option>
            <option value="warning">Warning</option>
            <option value="info">Info</option>
          </select>
        </label>
        <label class="inline">
          Device <input type="search" value={deviceInput} onInput={(e) => setDeviceInput(e.currentTarget.value)} onBlur={() => onFilter({ device: deviceInput.trim() })} placeholder="any device" />
        </label>
        <button type="submit" class="btn small">
          Filter
        </button>
        {list.data && (
          <span class="muted small" aria-live="polite">
            {formatCount(list.data.total)} {list.data.total === 1 ? 'alert' : 'alerts'}
            {list.data.suppressed > 0 ? ` · ${formatCount(list.data.suppressed)} suppressed (too many active)` : ''}
          </span>
        )}
      </form>
      <Panel>
        {list.loading ? (
          <Loading rows={4} />
        ) : list.error && !list.data ? (
          <ErrorNote error={list.error} onRetry={list.reload} />
        ) : !list.data || list.data.data.length === 0 ? (
          <Empty>
            No {status || ''} alerts{severity ? ` of severity ${severity}` : ''}
            {device ? ` on ${device}` : ''}. New ones appear here as they open.
          </Empty>
        ) : (
          <ul class="alert-list" aria-label="Alerts">
            {list.data.data.map((a) => (
              <AlertItem key={a.id} alert={a} now={now} fresh={fresh.has(a.id)} canWrite={canWrite} onChanged={(x) => list.mutate((d) => d && (matches(x, filters.current) ? { ...d, data: d.data.map((y) => (y.id === x.id ? x : y)) } : { ...d, data: d.data.filter((y) => y.id !== x.id), total: Math.max(0, d.total - 1) }))} />
            ))}
          </ul>
        )}
      </Panel>
    </>
  );
}

function AlertItem({ alert: a, now, fresh, canWrite, onChanged }: { alert: Alert; now: number; fresh: boolean; canWrite: boolean; onChanged: (a: Alert) => void }) {
  const [action, setAction] = useState<'acknowledge' | 'resolve' | null>(null);
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const noteRef = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (action) noteRef.current?.focus();
  }, [action]);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!action) return;
    setBusy(true);
    setError(null);
    try {
      const updated = await api<Alert>(`/api/v1/alerts/${encodeURIComponent(a.id)}/${action}`, { method: 'POST', body: note.trim() ? { note: note.trim() } : {} });
      onChanged(updated);
      setAction(null);
      setNote('');
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };

  return (
    <li class={`alert-item ${a.severity} ${fresh ? 'fresh' : ''}`} data-alert-id={a.id} data-status={a.status}>
      <div class="alert-main">
        <div class="alert-title">
          <Badge tone={a.severity}>{a.severity}</Badge>
          <Badge tone={`status-${a.status}`}>{a.status}</Badge>
          <span class="alert-message">{a.message}</span>
        </div>
        <div class="alert-meta muted small">
          {a.device_id ? (
            <>
              <Link href={devicePath(a.device_id)}>{a.device_id}</Link> ·{' '}
            </>
          ) : null}
          <code>{a.metric}</code> · rule <code>{a.rule_id}</code> ({a.rule_kind})
          {a.value != null && <> · value {formatValue(a.value)}</>}
          {a.expected != null && <> · expected {formatValue(a.expected)}</>}
          {a.score != null && <> · {formatValue(a.score)} σ</>}
          {' · '}
          {formatCount(a.occurrences)}× · opened <time dateTime={a.opened_at} title={formatDateTime(a.opened_at)}>{formatRelative(a.opened_at, now)}</time>
          {a.status !== 'open' && a.note && <> · note: “{a.note}”</>}
          {a.resolution && <> · resolved ({a.resolution})</>}
        </div>
      </div>
      {canWrite && a.status !== 'resolved' && !action && (
        <div class="alert-actions">
          {a.status === 'open' && (
            <button type="button" class="btn small" onClick={() => setAction('acknowledge')}>
              Acknowledge
            </button>
          )}
          <button type="button" class="btn small" onClick={() => setAction('resolve')}>
            Resolve
          </button>
        </div>
      )}
      {action && (
        <form class="alert-form" onSubmit={submit}>
          <Field label={`Note (${action === 'acknowledge' ? 'acknowledging' : 'resolving'} ${a.id}, optional)`} error={error?.fieldError('note')}>
            {({ id, describedBy, invalid }) => (
              <textarea id={id} ref={noteRef} rows={2} maxLength={1000} value={note} onInput={(e) => setNote(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />
            )}
          </Field>
          {error && !error.fieldError('note') && <ErrorNote error={error} />}
          <div class="row">
            <button type="submit" class="btn small primary" disabled={busy}>
              {busy ? 'Saving…' : action === 'acknowledge' ? 'Confirm acknowledge' : 'Confirm resolve'}
            </button>
            <button type="button" class="btn small ghost" onClick={() => setAction(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
    </li>
  );
}

// ---- Rules ----

const KIND_FIELDS: Record<RuleKindName, string[]> = {
  zscore: ['window', 'threshold', 'min_points'],
  ewma: ['alpha', 'threshold', 'min_points'],
  threshold: ['op', 'value', 'min', 'max'],
  deadman: ['minutes'],
};

const KIND_LABEL: Record<RuleKindName, string> = {
  zscore: 'Z-score (rolling mean)',
  ewma: 'EWMA',
  threshold: 'Threshold',
  deadman: 'Dead man (no data)',
};

export function describeRule(r: Rule): string {
  switch (r.kind) {
    case 'zscore':
      return `beyond ${r.threshold}σ of the last ${r.window} points (after ${r.min_points})`;
    case 'ewma':
      return `beyond ${r.threshold}σ of an EWMA (α ${r.alpha}, after ${r.min_points})`;
    case 'threshold':
      return r.op === 'outside' ? `outside ${r.min} … ${r.max}` : `${r.op} ${r.value}`;
    case 'deadman':
      return `no data for ${r.minutes} min`;
  }
}

interface Draft {
  id: string;
  name: string;
  kind: RuleKindName;
  severity: Severity;
  devices: string;
  metrics: string;
  resolve_after: string;
  enabled: boolean;
  window: string;
  threshold: string;
  min_points: string;
  alpha: string;
  op: string;
  value: string;
  min: string;
  max: string;
  minutes: string;
}

const BLANK: Draft = {
  id: '',
  name: '',
  kind: 'threshold',
  severity: 'warning',
  devices: '',
  metrics: '',
  resolve_after: '',
  enabled: true,
  window: '',
  threshold: '',
  min_points: '',
  alpha: '',
  op: '>',
  value: '',
  min: '',
  max: '',
  minutes: '',
};

function draftOf(r: Rule): Draft {
  const s = (v: unknown) => (v === undefined || v === null ? '' : String(v));
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    severity: r.severity,
    devices: r.devices.join(', '),
    metrics: r.metrics.join(', '),
    resolve_after: s(r.resolve_after),
    enabled: r.enabled,
    window: s(r.window),
    threshold: s(r.threshold),
    min_points: s(r.min_points),
    alpha: s(r.alpha),
    op: r.op ?? '>',
    value: s(r.value),
    min: s(r.min),
    max: s(r.max),
    minutes: s(r.minutes),
  };
}

/** The rule body the API takes: only the fields of the kind, numbers as numbers. */
export function ruleBody(d: Draft, withId: boolean): Record<string, unknown> {
  const list = (s: string) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const body: Record<string, unknown> = {
    kind: d.kind,
    severity: d.severity,
    devices: list(d.devices),
    metrics: list(d.metrics),
    enabled: d.enabled,
  };
  if (withId && d.id.trim()) body.id = d.id.trim();
  if (d.name.trim()) body.name = d.name.trim();
  if (d.resolve_after.trim()) body.resolve_after = num(d.resolve_after);
  const own = KIND_FIELDS[d.kind].filter((f) => !(d.kind === 'threshold' && ((d.op === 'outside' && f === 'value') || (d.op !== 'outside' && (f === 'min' || f === 'max')))));
  for (const f of own) {
    const v = (d as unknown as Record<string, string>)[f].trim();
    if (!v) continue;
    body[f] = f === 'op' ? v : num(v);
  }
  return body;
}

/** The fields of a draft that take numbers. */
function numericFields(d: Draft): string[] {
  return ['resolve_after', ...KIND_FIELDS[d.kind].filter((f) => f !== 'op')];
}

/** A number as typed; text that is not one goes as it is, for the server to name the field. */
function num(s: string): number | string {
  const n = Number(s.trim());
  return s.trim() !== '' && Number.isFinite(n) ? n : s.trim();
}

function Rules() {
  const { session } = useApp();
  const canWrite = hasScope(session.who, 'write');
  const rules = useApi(() => api<{ data: Rule[] }>('/api/v1/rules'), []);
  const [editing, setEditing] = useState<{ mode: 'new' | 'edit'; draft: Draft } | null>(null);
  const [deleting, setDeleting] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);

  const remove = async (id: string) => {
    setError(null);
    try {
      await api(`/api/v1/rules/${encodeURIComponent(id)}`, { method: 'DELETE' });
      setDeleting(null);
      rules.reload();
    } catch (e) {
      setError(e as ApiError);
    }
  };

  return (
    <>
      <div class="row">
        {canWrite && !editing && (
          <button type="button" class="btn primary" onClick={() => setEditing({ mode: 'new', draft: { ...BLANK } })}>
            New rule
          </button>
        )}
        {!canWrite && <p class="muted small">This key can read rules; changing them needs the write scope.</p>}
      </div>
      {editing && (
        <RuleForm
          mode={editing.mode}
          initial={editing.draft}
          onCancel={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            rules.reload();
          }}
        />
      )}
      {error && <ErrorNote error={error} />}
      <Panel title="Rules">
        {rules.loading ? (
          <Loading rows={3} />
        ) : rules.error && !rules.data ? (
          <ErrorNote error={rules.error} onRetry={rules.reload} />
        ) : !rules.data || rules.data.data.length === 0 ? (
          <Empty>No rules. Create one to be alerted on anomalies, thresholds or silent devices.</Empty>
        ) : (
          <div class="table-wrap">
            <table class="table">
              <caption class="sr-only">Alert rules</caption>
              <thead>
                <tr>
                  <th scope="col">Rule</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Condition</th>
                  <th scope="col">Scope</th>
                  <th scope="col">Severity</th>
                  <th scope="col">Enabled</th>
                  {canWrite && (
                    <th scope="col">
                      <span class="sr-only">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {rules.data.data.map((r) => (
                  <tr key={r.id} data-rule-id={r.id}>
                    <td>
                      <strong>{r.name}</strong>
                      {r.name !== r.id && (
                        <>
                          {' '}
                          <code class="muted">{r.id}</code>
                        </>
                      )}
                    </td>
                    <td>{r.kind}</td>
                    <td>{describeRule(r)}</td>
                    <td class="small">
                      {r.devices.length ? r.devices.join(', ') : 'all devices'} · {r.metrics.length ? r.metrics.join(', ') : 'all metrics'}
                    </td>
                    <td>
                      <Badge tone={r.severity}>{r.severity}</Badge>
                    </td>
                    <td>{r.enabled ? 'yes' : 'no'}</td>
                    {canWrite && (
                      <td class="nowrap">
                        {deleting === r.id ? (
                          <>
                            <button type="button" class="btn small danger" onClick={() => void remove(r.id)}>
                              Delete {r.id}
                            </button>{' '}
                            <button type="button" class="btn small ghost" onClick={() => setDeleting(null)}>
                              Keep
                            </button>
                          </>
                        ) : (
                          <>
                            <button type="button" class="btn small" onClick={() => setEditing({ mode: 'edit', draft: draftOf(r) })} aria-label={`Edit rule ${r.id}`}>
                              Edit
                            </button>{' '}
                            <button type="button" class="btn small ghost" onClick={() => setDeleting(r.id)} aria-label={`Delete rule ${r.id}`}>
                              Delete
                            </button>
                          </>
                        )}
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
            <p class="muted small">Editing or deleting a rule resolves its active alerts.</p>
          </div>
        )}
      </Panel>
    </>
  );
}

function RuleForm({ mode, initial, onCancel, onSaved }: { mode: 'new' | 'edit'; initial: Draft; onCancel: () => void; onSaved: () => void }) {
  const [d, setD] = useState<Draft>(initial);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof Draft) => (e: Event) => {
    const t = e.currentTarget as HTMLInputElement;
    setD((x) => ({ ...x, [k]: t.type === 'checkbox' ? t.checked : t.value }));
  };
  const fe = (f: string) => error?.fieldError(f);
  const shownFields = new Set(['id', 'name', 'kind', 'severity', 'devices', 'metrics', 'resolve_after', 'enabled', ...KIND_FIELDS[d.kind]]);
  const unshown = error?.errors.filter((x) => !shownFields.has(x.field)) ?? [];

  const submit = async (e: Event) => {
    e.preventDefault();
    const notNumbers = numericFields(d).filter((f) => {
      const v = (d as unknown as Record<string, string>)[f].trim();
      return v !== '' && !Number.isFinite(Number(v));
    });
    if (notNumbers.length > 0) {
      setError(new ApiError(400, { error: 'invalid_rule', message: 'Some fields are not numbers.', errors: notNumbers.map((field) => ({ index: 0, field, reason: 'must be a number' })) }));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      if (mode === 'new') await api<Rule>('/api/v1/rules', { method: 'POST', body: ruleBody(d, true) });
      else await api<Rule>(`/api/v1/rules/${encodeURIComponent(d.id)}`, { method: 'PUT', body: ruleBody(d, false) });
      onSaved();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };

  const text = (k: keyof Draft, label: string, hint?: string, inputMode?: 'decimal' | 'numeric') => (
    <Field label={label} error={fe(k)} hint={hint}>
      {({ id, describedBy, invalid }) => (
        <input id={id} value={String(d[k])} onInput={set(k)} inputMode={inputMode} aria-describedby={describedBy} aria-invalid={invalid || undefined} disabled={mode === 'edit' && k === 'id'} />
      )}
    </Field>
  );

  return (
    <Panel title={mode === 'new' ? 'New rule' : `Edit rule ${d.id}`} class="rule-form">
      <form onSubmit={submit} noValidate>
        <div class="form-grid">
          {text('id', 'Rule id', mode === 'new' ? 'Letters, digits, - or _; generated when empty' : undefined)}
          {text('name', 'Name', 'Defaults to the id')}
          <Field label="Kind" error={fe('kind')}>
            {({ id, describedBy, invalid }) => (
              <select id={id} value={d.kind} onChange={set('kind')} aria-describedby={describedBy} aria-invalid={invalid || undefined}>
                {(Object.keys(KIND_LABEL) as RuleKindName[]).map((k) => (
                  <option key={k} value={k}>
                    {KIND_LABEL[k]}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <Field label="Severity" error={fe('severity')}>
            {({ id, describedBy, invalid }) => (
              <select id={id} value={d.severity} onChange={set('severity')} aria-describedby={describedBy} aria-invalid={invalid || undefined}>
                <option value="info">info</option>
                <option value="warning">warning</option>
                <option value="critical">critical</option>
              </select>
            )}
          </Field>
          {d.kind === 'zscore' && (
            <>
              {text('window', 'Window (points)', '2 to 10000; default 100', 'numeric')}
              {text('threshold', 'Threshold (σ)', 'Default 3', 'decimal')}
              {text('min_points', 'Minimum points', 'Before the rule judges; default 20', 'numeric')}
            </>
          )}
          {d.kind === 'ewma' && (
            <>
              {text('alpha', 'Alpha', 'Smoothing in (0, 1]', 'decimal')}
              {text('threshold', 'Threshold (σ)', 'Default 3', 'decimal')}
              {text('min_points', 'Minimum points', undefined, 'numeric')}
            </>
          )}
          {d.kind === 'threshold' && (
            <>
              <Field label="Operator" error={fe('op')}>
                {({ id, describedBy, invalid }) => (
                  <select id={id} value={d.op} onChange={set('op')} aria-describedby={describedBy} aria-invalid={invalid || undefined}>
                    <option value=">">above (&gt;)</option>
                    <option value="<">below (&lt;)</option>
                    <option value="outside">outside a range</option>
                  </select>
                )}
              </Field>
              {d.op === 'outside' ? (
                <>
                  {text('min', 'Lower bound', undefined, 'decimal')}
                  {text('max', 'Upper bound', undefined, 'decimal')}
                </>
              ) : (
                text('value', 'Limit', undefined, 'decimal')
              )}
            </>
          )}
          {d.kind === 'deadman' && text('minutes', 'Minutes without data', 'At most 10080 (a week)', 'decimal')}
          {text('devices', 'Devices', 'Comma-separated; empty = all devices')}
          {text('metrics', 'Metrics', 'Comma-separated; empty = all metrics')}
          {text('resolve_after', 'Resolve after (normal points)', 'Default 5', 'numeric')}
          <div class="field check">
            <label>
              <input type="checkbox" checked={d.enabled} onChange={set('enabled')} /> Enabled
            </label>
          </div>
        </div>
        {error && (unshown.length > 0 || error.errors.length === 0) && <ErrorNote error={error} />}
        {error && error.errors.length > 0 && unshown.length === 0 && (
          <p class="field-error" role="alert">
            {error.message}
          </p>
        )}
        <div class="row">
          <button type="submit" class="btn primary" disabled={busy}>
            {busy ? 'Saving…' : mode === 'new' ? 'Create rule' : 'Save rule'}
          </button>
          <button type="button" class="btn ghost" onClick={onCancel}>
            Cancel
          </button>
        </div>
      </form>
    </Panel>
  );
}
