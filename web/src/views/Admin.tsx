// The admin console (admin keys): tenants listed, created and deleted (typed confirmation),
// their retention, quota and webhook; their keys created (the secret shown once), listed and
// revoked.

import { useEffect, useState } from 'preact/hooks';
import { CopyButton, Empty, ErrorNote, Field, Loading, Panel } from '../components/ui';
import { api, ApiError } from '../lib/api';
import { formatCount, formatDateTime, formatDuration } from '../lib/format';
import { useApi } from '../lib/hooks';
import { useQueryState } from '../lib/router';
import { useApp } from '../lib/session';
import type { CreatedKey, KeyView, Tenant } from '../lib/types';

const SPEC = { tenant: '' };

export function Admin() {
  const [state, setState] = useQueryState(SPEC);
  const tenants = useApi(() => api<{ data: Tenant[] }>('/api/v1/tenants'), []);
  const selected = tenants.data?.data.find((t) => t.id === state.tenant) ?? null;

  return (
    <div class="page admin">
      <div class="page-head">
        <h1>Admin</h1>
      </div>
      <div class="grid admin-grid">
        <div>
          <Panel title="Tenants" actions={tenants.data && <span class="muted small">{formatCount(tenants.data.data.length)}</span>}>
            {tenants.loading ? (
              <Loading rows={4} />
            ) : tenants.error && !tenants.data ? (
              <ErrorNote error={tenants.error} onRetry={tenants.reload} />
            ) : (
              <ul class="tenant-list" aria-label="Tenants">
                {tenants.data?.data.map((t) => (
                  <li key={t.id}>
                    <button
                      type="button"
                      class={`tenant-item ${t.id === state.tenant ? 'selected' : ''}`}
                      aria-pressed={t.id === state.tenant}
                      onClick={() => setState({ tenant: t.id })}
                    >
                      <strong>{t.name}</strong>
                      {t.id !== t.name && <code class="muted small"> {t.id}</code>}
                    </button>
                  </li>
                ))}
              </ul>
            )}
          </Panel>
          <CreateTenant
            onCreated={(t) => {
              tenants.reload();
              setState({ tenant: t.id });
            }}
          />
        </div>
        <div>
          {selected ? (
            <TenantDetail
              key={selected.id}
              tenant={selected}
              onChanged={tenants.reload}
              onDeleted={() => {
                setState({ tenant: '' });
                tenants.reload();
              }}
            />
          ) : state.tenant && tenants.data ? (
            <Panel>
              <Empty>
                No tenant <code>{state.tenant}</code>.
              </Empty>
            </Panel>
          ) : (
            <Panel>
              <Empty>Choose a tenant to see its settings and keys.</Empty>
            </Panel>
          )}
        </div>
      </div>
    </div>
  );
}

function CreateTenant({ onCreated }: { onCreated: (t: Tenant) => void }) {
  const [name, setName] = useState('');
  const [eps, setEps] = useState('');
  const [retention, setRetention] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const fieldOf = (f: string) => error?.fieldError(f);

  return (
    <Panel title="New tenant">
      <form
        class="stack"
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const body: Record<string, unknown> = { name: name.trim() };
            if (eps.trim()) body.events_per_sec = Number(eps);
            if (retention.trim()) body.retention = retention.trim();
            const t = await api<Tenant>('/api/v1/tenants', { method: 'POST', body });
            setName('');
            setEps('');
            setRetention('');
            onCreated(t);
          } catch (err) {
            setError(err as ApiError);
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field label="Name" error={fieldOf('name') ?? (error?.status === 409 ? error.message : undefined)}>
          {({ id, describedBy, invalid }) => <input id={id} value={name} onInput={(e) => setName(e.currentTarget.value)} required aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
        </Field>
        <Field label="Quota (events/s)" hint="Empty: the server default; 0: unlimited" error={fieldOf('events_per_sec')}>
          {({ id, describedBy, invalid }) => <input id={id} inputMode="numeric" value={eps} onInput={(e) => setEps(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
        </Field>
        <Field label="Retention" hint="e.g. 30d, 12h; 0 keeps forever; empty: the server default" error={fieldOf('retention')}>
          {({ id, describedBy, invalid }) => <input id={id} value={retention} onInput={(e) => setRetention(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
        </Field>
        {error && !fieldOf('name') && !fieldOf('events_per_sec') && !fieldOf('retention') && error.status !== 409 && <ErrorNote error={error} />}
        <button type="submit" class="btn primary" disabled={busy || !name.trim()}>
          {busy ? 'Creating…' : 'Create tenant'}
        </button>
      </form>
    </Panel>
  );
}

function TenantDetail({ tenant, onChanged, onDeleted }: { tenant: Tenant; onChanged: () => void; onDeleted: () => void }) {
  return (
    <>
      <Panel title={`Tenant ${tenant.name}`}>
        <dl class="facts">
          <div>
            <dt>Id</dt>
            <dd>
              <code>{tenant.id}</code>
            </dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>{formatDateTime(tenant.created_at)}</dd>
          </div>
          <div>
            <dt>Retention</dt>
            <dd>{tenant.retention_secs === undefined ? 'server default' : tenant.retention_secs === 0 ? 'forever' : formatDuration(tenant.retention_secs)}</dd>
          </div>
          <div>
            <dt>Quota</dt>
            <dd>{tenant.events_per_sec === undefined ? 'server default' : tenant.events_per_sec === 0 ? 'unlimited' : `${formatCount(tenant.events_per_sec)} events/s`}</dd>
          </div>
          <div>
            <dt>Webhook</dt>
            <dd>{tenant.webhook_url ? <code>{tenant.webhook_url}</code> : <span class="muted">none</span>}</dd>
          </div>
        </dl>
        <TenantSettings tenant={tenant} onSaved={onChanged} />
      </Panel>
      <Keys tenant={tenant} />
      {tenant.id !== 'default' && <DeleteTenant tenant={tenant} onDeleted={onDeleted} />}
    </>
  );
}

function TenantSettings({ tenant, onSaved }: { tenant: Tenant; onSaved: () => void }) {
  const [retention, setRetention] = useState(tenant.retention ?? '');
  const [eps, setEps] = useState(tenant.events_per_sec === undefined ? '' : String(tenant.events_per_sec));
  const [webhook, setWebhook] = useState(tenant.webhook_url ?? '');
  const [error, setError] = useState<ApiError | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const fieldOf = (f: string) => error?.fieldError(f);
  const invalidEps = eps.trim() !== '' && !/^\d+$/.test(eps.trim());

  return (
    <form
      class="form-grid settings"
      noValidate
      onSubmit={async (e) => {
        e.preventDefault();
        if (invalidEps) return;
        setBusy(true);
        setError(null);
        setSaved(false);
        try {
          await api<Tenant>(`/api/v1/tenants/${encodeURIComponent(tenant.id)}`, {
            method: 'PATCH',
            body: {
              retention: retention.trim() ? retention.trim() : null,
              events_per_sec: eps.trim() ? Number(eps.trim()) : null,
              webhook_url: webhook.trim() ? webhook.trim() : null,
            },
          });
          setSaved(true);
          onSaved();
        } catch (err) {
          setError(err as ApiError);
        } finally {
          setBusy(false);
        }
      }}
    >
      <Field label="Retention" hint="e.g. 90d; 0 keeps forever; empty: the server default" error={fieldOf('retention')}>
        {({ id, describedBy, invalid }) => <input id={id} value={retention} onInput={(e) => setRetention(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
      </Field>
      <Field label="Quota (events/s)" hint="0: unlimited; empty: the server default" error={invalidEps ? 'a whole number' : fieldOf('events_per_sec')}>
        {({ id, describedBy, invalid }) => <input id={id} inputMode="numeric" value={eps} onInput={(e) => setEps(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
      </Field>
      <Field label="Alert webhook URL" hint="Alert transitions are POSTed here; empty removes it" error={fieldOf('webhook_url')}>
        {({ id, describedBy, invalid }) => <input id={id} type="url" value={webhook} onInput={(e) => setWebhook(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
      </Field>
      {error && !fieldOf('retention') && !fieldOf('events_per_sec') && !fieldOf('webhook_url') && <ErrorNote error={error} />}
      <div class="row">
        <button type="submit" class="btn" disabled={busy || invalidEps}>
          {busy ? 'Saving…' : 'Save settings'}
        </button>
        {saved && (
          <span class="muted small" role="status">
            Saved.
          </span>
        )}
      </div>
    </form>
  );
}

const SCOPES: { value: string; label: string }[] = [
  { value: 'read', label: 'read (queries, live feeds)' },
  { value: 'write', label: 'write (ingest, rules, alerts)' },
  { value: 'admin', label: 'admin (tenants and keys; default tenant only)' },
];

function Keys({ tenant }: { tenant: Tenant }) {
  const { session } = useApp();
  const keys = useApi(() => api<{ data: KeyView[] }>(`/api/v1/tenants/${encodeURIComponent(tenant.id)}/keys`), [tenant.id]);
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Set<string>>(new Set(['read', 'write']));
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [revoking, setRevoking] = useState<string | null>(null);
  const [revokeError, setRevokeError] = useState<ApiError | null>(null);

  // The secret is forgotten when the tenant changes or the panel goes.
  useEffect(() => () => setCreated(null), [tenant.id]);

  const revoke = async (k: KeyView) => {
    setRevokeError(null);
    try {
      await api(`/api/v1/tenants/${encodeURIComponent(tenant.id)}/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
      setRevoking(null);
      keys.reload();
    } catch (e) {
      setRevokeError(e as ApiError);
    }
  };

  return (
    <Panel title="Keys">
      {created && (
        <div class="secret" role="region" aria-label="New key secret">
          <p>
            <strong>Key “{created.name}” created.</strong> Copy its secret now: it is shown only this once and Eddy keeps only a hash.
          </p>
          <div class="secret-row">
            <code class="secret-value" data-testid="new-key-secret">
              {created.key}
            </code>
            <CopyButton text={created.key} label="Copy secret" />
          </div>
          <button type="button" class="btn small ghost" onClick={() => setCreated(null)}>
            I have copied it — hide the secret
          </button>
        </div>
      )}
      <form
        class="key-form"
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const k = await api<CreatedKey>(`/api/v1/tenants/${encodeURIComponent(tenant.id)}/keys`, { method: 'POST', body: { name: name.trim(), scopes: [...scopes] } });
            setCreated(k);
            setName('');
            keys.reload();
          } catch (err) {
            setError(err as ApiError);
          } finally {
            setBusy(false);
          }
        }}
      >
        <Field label="Key name" error={error?.fieldError('name')}>
          {({ id, describedBy, invalid }) => <input id={id} value={name} placeholder="e.g. ingest-gateway" onInput={(e) => setName(e.currentTarget.value)} aria-describedby={describedBy} aria-invalid={invalid || undefined} />}
        </Field>
        <fieldset class="scopes">
          <legend>Scopes</legend>
          {SCOPES.filter((s) => s.value !== 'admin' || tenant.id === 'default').map((s) => (
            <label key={s.value} class="check">
              <input
                type="checkbox"
                checked={scopes.has(s.value)}
                onChange={(e) => {
                  const on = e.currentTarget.checked;
                  setScopes((x) => {
                    const n = new Set(x);
                    if (on) n.add(s.value);
                    else n.delete(s.value);
                    return n;
                  });
                }}
              />{' '}
              {s.label}
            </label>
          ))}
          {error?.code === 'invalid_scope' && <small class="field-error">{error.message}</small>}
        </fieldset>
        {error && error.code !== 'invalid_scope' && !error.fieldError('name') && <ErrorNote error={error} />}
        <button type="submit" class="btn primary" disabled={busy || scopes.size === 0}>
          {busy ? 'Creating…' : 'Create key'}
        </button>
      </form>
      {revokeError && <ErrorNote error={revokeError} />}
      {keys.loading ? (
        <Loading rows={2} />
      ) : keys.error && !keys.data ? (
        <ErrorNote error={keys.error} onRetry={keys.reload} />
      ) : !keys.data || keys.data.data.length === 0 ? (
        <Empty>This tenant has no keys.</Empty>
      ) : (
        <div class="table-wrap">
          <table class="table compact keys-table">
            <caption class="sr-only">Keys of {tenant.name}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {keys.data.data.map((k) => (
                <tr key={k.id} data-key-id={k.id}>
                  <td>
                    {k.name}
                    {k.id === session.who.key_id && <span class="muted small"> (this session)</span>}
                  </td>
                  <td>
                    <code>{k.prefix}…</code>
                  </td>
                  <td>{k.scopes.join(', ')}</td>
                  <td class="nowrap">{formatDateTime(k.created_at)}</td>
                  <td class="nowrap">
                    {k.id === session.who.key_id ? (
                      <span class="muted small">cannot revoke itself</span>
                    ) : revoking === k.id ? (
                      <>
                        <button type="button" class="btn small danger" onClick={() => void revoke(k)}>
                          Confirm revoke
                        </button>{' '}
                        <button type="button" class="btn small ghost" onClick={() => setRevoking(null)}>
                          Cancel
                        </button>
                      </>
                    ) : (
                      <button type="button" class="btn small" onClick={() => setRevoking(k.id)} aria-label={`Revoke key ${k.name}`}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Panel>
  );
}

function DeleteTenant({ tenant, onDeleted }: { tenant: Tenant; onDeleted: () => void }) {
  const [typed, setTyped] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <Panel title="Delete tenant" class="danger-zone">
      <p>
        Deleting <strong>{tenant.name}</strong> removes its keys and all its data: events, rollups, rules and alerts. It cannot be undone.
      </p>
      <form
        class="stack"
        onSubmit={async (e) => {
          e.preventDefault();
          if (typed !== tenant.name) return;
          setBusy(true);
          setError(null);
          try {
            await api(`/api/v1/tenants/${encodeURIComponent(tenant.id)}`, { method: 'DELETE' });
            onDeleted();
          } catch (err) {
            setError(err as ApiError);
            setBusy(false);
          }
        }}
      >
        <Field label={`Type the tenant's name (${tenant.name}) to confirm`}>
          {({ id }) => <input id={id} value={typed} onInput={(e) => setTyped(e.currentTarget.value)} autoComplete="off" />}
        </Field>
        {error && <ErrorNote error={error} />}
        <button type="submit" class="btn danger" disabled={busy || typed !== tenant.name}>
          {busy ? 'Deleting…' : `Delete ${tenant.name}`}
        </button>
      </form>
    </Panel>
  );
}
