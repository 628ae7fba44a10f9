import { CopyButton, Link, Panel } from '../components/ui';
import { maskSecret } from '../lib/format';
import { hasScope, tenantLabel, tenantName, useApp } from '../lib/session';

export function NotFound({ message }: { message?: string }) {
  return (
    <div class="page">
      <h1>Not found</h1>
      <p>{message ?? 'There is no page at this address.'}</p>
      <p>
        <Link href="/overview">Go to the overview</Link>
      </p>
    </div>
  );
}

/** The command that sends one event to this server, with the key as a shell variable. */
export function curlCommand(origin: string): string {
  return [
    `curl -s ${origin}/api/v1/events \\`,
    `  -H "x-api-key: $EDDY_API_KEY" -H 'Content-Type: application/json' \\`,
    `  -d '{"type":"reading","device_id":"sensor-001","metrics":{"temperature":23.5}}'`,
  ].join('\n');
}

/** "Send your first event": a working curl line for this host. */
export function FirstEvent({ title = 'Send your first event', intro }: { title?: string; intro?: string }) {
  const { session } = useApp();
  const origin = location.origin;
  const cmd = curlCommand(origin);
  const canWrite = hasScope(session.who, 'write');
  return (
    <Panel title={title} class="first-event">
      <p>
        {intro ?? (
          <>
            Nothing has arrived in tenant <strong title={session.who.tenant_id}>{tenantLabel(session.who)}</strong> yet. Send an event from a terminal — it shows up
            here as soon as it is stored.
          </>
        )}
      </p>
      <ol class="steps">
        <li>
          Put your key in a variable (the key you signed in with is <code>{maskSecret(session.key)}</code>
          {canWrite ? '' : '; it cannot write, so use a key with the write scope'}):
          <pre class="code">
            <code>export EDDY_API_KEY='…your key…'</code>
          </pre>
        </li>
        <li>
          Send a reading:
          <pre class="code" aria-label="curl command">
            <code>{cmd}</code>
          </pre>
          <CopyButton text={cmd} label="Copy command" />
        </li>
      </ol>
      <p class="muted">
        The answer <code>{'{"accepted":1,…,"durable":true}'}</code> means the event is on disk. Any JSON shape works: arrays,
        NDJSON, <code>/telemetry</code>, <code>/events</code>, <code>/ingest</code>.
      </p>
    </Panel>
  );
}

export function NoRead() {
  const { session } = useApp();
  return (
    <div class="page">
      <h1>This key cannot read</h1>
      <p>
        The key you signed in with has no <code>read</code> scope: it can send events to its tenant but not see them. Sign in with a
        key that has <code>read</code> to use the dashboard.
      </p>
      <FirstEvent title="Sending events with this key" intro={`Events sent with this key go to tenant ${tenantName(session.who)}.`} />
    </div>
  );
}
