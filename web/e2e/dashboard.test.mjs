// Browser tests of the dashboard against a running Eddy that serves it (EDDY_URL) with its
// admin key (EDDY_ADMIN_KEY). Each test makes its own tenants and keys over the admin API.
// Every page is watched: console errors, page errors, failed requests and error answers the
// test did not provoke fail it. Waits are on conditions, never fixed sleeps.
//
//   EDDY_URL=http://127.0.0.1:8080 EDDY_ADMIN_KEY=$(cat data/admin.key) npm run e2e
//
// EDDY_SCREENSHOTS=<dir> also saves every view, light and dark. Timings are printed as one
// JSON line starting with `EDDY_BENCH `.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, describe, test } from 'node:test';
import { ADMIN_KEY, BASE, call, cleanup, eventually, closeBrowser, newTenant, openPage, percentile, screenshot, send, signIn, uid, until } from './helpers.mjs';

const bench = {};
const T = { timeout: 180_000 };

after(async () => {
  await closeBrowser();
  await cleanup();
  if (Object.keys(bench).length) console.log(`EDDY_BENCH ${JSON.stringify(bench)}`);
});

function reading(device, metrics, time) {
  return { type: 'reading', device_id: device, metrics, ...(time ? { time } : {}) };
}

describe('signing in', () => {
  test('a refused key shows the server’s message; a good key signs in; signing out forgets it', T, async () => {
    const { key, tenant } = await newTenant('signin');
    const w = await openPage();
    const { page } = w;
    // What the overview asks: one overview call (polled), nothing of the five it replaces.
    const asked = [];
    page.on('request', (r) => asked.push(new URL(r.url()).pathname));
    try {
      await w.goto('/');
      const bad = `eddy_${'x'.repeat(46)}`;
      w.expectResponse(401, '/api/v1/whoami');
      await page.getByLabel('API key').fill(bad);
      await page.getByRole('button', { name: 'Sign in' }).click();
      const alert = page.getByRole('alert');
      await alert.waitFor();
      assert.match(await alert.innerText(), /refused/i);

      await page.getByLabel('API key').fill(key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      const nav = page.getByRole('navigation', { name: 'Main' });
      await nav.waitFor();
      for (const name of ['Overview', 'Devices', 'Alerts', 'Analytics', 'SQL']) await nav.getByRole('link', { name, exact: true }).waitFor();
      assert.equal(await nav.getByRole('link', { name: 'Admin', exact: true }).count(), 0, 'a tenant key sees no Admin link');
      // The header names the tenant (whoami's tenant_name); its id stays in the title.
      assert.equal((await page.locator('.who').innerText()).trim(), tenant.name);
      assert.ok((await page.locator('.who').getAttribute('title')).includes(tenant.id));
      // The key lives in sessionStorage only: not in the URL, not in localStorage, not logged.
      assert.ok(!page.url().includes(key));
      assert.equal(await page.evaluate(() => Object.values(localStorage).join('')).then((s) => s.includes('eddy_')), false);
      assert.equal(await page.evaluate(() => sessionStorage.getItem('eddy.apiKey')), key);
      await page.getByRole('heading', { name: 'Overview' }).waitFor();
      await page.getByText('Live', { exact: true }).waitFor();
      // A first start: the panel with a working curl line for this host.
      await page.getByRole('heading', { name: 'Send your first event' }).waitFor();
      const curl = await page.getByLabel('curl command').innerText();
      assert.ok(curl.includes(`curl -s ${BASE}/api/v1/events`), curl);
      // It is a working command: run it (as the shell would) and the dashboard fills in live.
      const body = /-d '(.*)'/.exec(curl)[1];
      await send(key, JSON.parse(body));
      await page.getByRole('heading', { name: 'Send your first event' }).waitFor({ state: 'detached' });
      assert.ok(asked.includes('/api/v1/overview'), asked.join(' '));
      const replaced = ['/api/v1/analytics/summary', '/api/v1/analytics/top', '/api/v1/alerts', '/lag', '/ready'];
      assert.deepEqual(asked.filter((p) => replaced.includes(p)), [], 'the overview asks /api/v1/overview only');

      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('API key').waitFor();
      assert.equal(await page.evaluate(() => sessionStorage.getItem('eddy.apiKey')), null);
      assert.ok(w.consoleText().every((t) => !t.includes(key)), 'the key never reaches the console');
      w.assertClean();
    } finally {
      await w.close();
    }
  });

  test('views follow the key’s scopes: a write-only key is told it cannot read', T, async () => {
    const { tenant } = await newTenant('scopes');
    const { body: k } = await call(`/api/v1/tenants/${tenant.id}/keys`, { body: { name: 'ingest', scopes: ['write'] } });
    const w = await openPage();
    try {
      await signIn(w, k.key, '/devices');
      await w.page.getByRole('heading', { name: 'This key cannot read' }).waitFor();
      assert.equal(await w.page.locator('.live-indicator').count(), 0, 'no live feed without read');
      assert.ok((await w.page.getByLabel('curl command').innerText()).includes('/api/v1/events'));
      w.assertClean();
    } finally {
      await w.close();
    }
  });

  test('an admin key sees the Admin console', T, async () => {
    const w = await openPage();
    try {
      await signIn(w, ADMIN_KEY);
      await w.page.getByRole('link', { name: 'Admin', exact: true }).click();
      await w.page.getByRole('heading', { name: 'Admin' }).waitFor();
      await w.page.getByRole('list', { name: 'Tenants' }).getByRole('button', { name: 'default', exact: true }).waitFor();
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('devices', () => {
  test('a device sent over HTTP is listed and its new readings appear live on its page', T, async () => {
    const { key } = await newTenant('devices');
    const device = uid('sensor');
    await send(key, [reading(device, { temperature: 21.25, humidity: 40 })]);
    const w = await openPage();
    const { page } = w;
    try {
      await signIn(w, key, '/devices');
      const row = page.getByRole('row').filter({ hasText: device });
      await row.waitFor();
      assert.match(await row.innerText(), /temperature/);
      assert.match(await row.innerText(), /21\.25/);
      // The list follows the feed too: a second device appears without reloading.
      const other = uid('sensor');
      await send(key, [reading(other, { temperature: 5 })]);
      await page.getByRole('row').filter({ hasText: other }).waitFor();

      await row.getByRole('link', { name: device }).click();
      await page.getByRole('heading', { name: device }).waitFor();
      const value = page.locator('output.latest-value[data-metric="temperature"]');
      await until(page, () => document.querySelector('output.latest-value[data-metric="temperature"]')?.textContent === '21.25');
      await page.locator('.chart[data-render-ms]').first().waitFor();
      assert.equal(await page.locator('.chart').count(), 2, 'one chart per metric');
      await page.getByText('Live', { exact: true }).waitFor();

      // New readings arrive over the live feed, without a reload.
      const navs = [];
      page.on('framenavigated', (f) => f === page.mainFrame() && navs.push(f.url()));
      await send(key, [reading(device, { temperature: 87.5 })]);
      await until(page, () => document.querySelector('output.latest-value[data-metric="temperature"]')?.textContent === '87.5');
      assert.equal(await value.innerText(), '87.5');
      // The temperature chart's current minute took the reading: its max is now 87.5.
      await until(page, () => {
        const panel = [...document.querySelectorAll('.chart-panel')].find((p) => p.querySelector('h2')?.textContent === 'temperature');
        const last = panel?.querySelector('.chart')?.getAttribute('data-last');
        return last ? JSON.parse(last)[3] === 87.5 : false;
      });
      assert.deepEqual(navs, [], 'no reload');
      // The range is in the URL: a link reproduces it.
      await page.getByRole('radio', { name: '24h' }).check();
      await until(page, () => location.search.includes('range=24h'));
      await page.locator('.chart[data-render-ms]').first().waitFor();
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('live connection', () => {
  test('a dropped feed reconnects with backoff, resubscribes and keeps the page live', T, async () => {
    const { key } = await newTenant('reconnect');
    const device = uid('pump');
    await send(key, [reading(device, { flow: 1 })]);
    const w = await openPage();
    const { page } = w;
    // Every feed connection passes through the test, which can cut it like a network would.
    const conns = [];
    await page.routeWebSocket(/\/api\/v1\/ws$/, (ws) => {
      const server = ws.connectToServer();
      const sent = [];
      ws.onMessage((m) => {
        sent.push(String(m));
        server.send(m);
      });
      conns.push({ ws, sent });
    });
    try {
      await signIn(w, key, `/devices/${device}`);
      await until(page, () => document.querySelector('.live-indicator')?.getAttribute('data-state') === 'open');
      await until(page, () => document.querySelector('output.latest-value[data-metric="flow"]')?.textContent === '1');
      assert.equal(conns.length, 1);
      // The server goes away as for a slow consumer (1013).
      await conns[0].ws.close({ code: 1013, reason: 'slow_consumer' });
      await until(page, () => document.querySelector('.live-indicator')?.getAttribute('data-state') === 'reconnecting');
      await until(page, () => document.querySelector('.live-indicator')?.getAttribute('data-state') === 'open', undefined, 40_000);
      assert.equal(conns.length, 2);
      // The new connection authenticated by message (no key in the URL) and asked again for
      // this device's feed.
      const sub = await eventually(() => conns[1].sent.map((m) => JSON.parse(m)).find((m) => m.type === 'subscribe'));
      assert.equal(JSON.parse(conns[1].sent[0]).type, 'auth');
      assert.deepEqual(sub.filters, { device_id: device });
      assert.deepEqual(sub.channels, ['events', 'rollups']);
      await send(key, [reading(device, { flow: 42 })]);
      await until(page, () => document.querySelector('output.latest-value[data-metric="flow"]')?.textContent === '42');
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('alerts', () => {
  test('an alert opened by a spike appears live and is acknowledged with a note', T, async () => {
    const { key } = await newTenant('alerts');
    const device = uid('boiler');
    const rule = uid('too-hot');
    await call('/api/v1/rules', { key, body: { id: rule, kind: 'threshold', op: '>', value: 100, metrics: ['temperature'], severity: 'critical' } });
    await send(key, [reading(device, { temperature: 20 })]);
    const w = await openPage();
    const { page } = w;
    try {
      await signIn(w, key, '/alerts');
      await page.getByText(/No open alerts/).waitFor();
      await page.getByText('Live', { exact: true }).waitFor();
      await send(key, [reading(device, { temperature: 250 })]);
      const item = page.locator('li.alert-item').filter({ hasText: device });
      await item.waitFor();
      assert.match(await item.innerText(), /critical/);
      assert.match(await item.innerText(), /above 100/);
      await item.getByRole('button', { name: 'Acknowledge' }).click();
      await item.getByLabel(/Note/).fill('checking the boiler');
      await item.getByRole('button', { name: 'Confirm acknowledge' }).click();
      // Acknowledged: it leaves the "open" list (live, from the server's transition).
      await item.waitFor({ state: 'detached' });
      const { body } = await call(`/api/v1/alerts?device_id=${device}`, { key });
      assert.equal(body.data.length, 1);
      assert.equal(body.data[0].status, 'acknowledged');
      assert.equal(body.data[0].note, 'checking the boiler');
      await page.getByLabel('Status').selectOption('acknowledged');
      await page.locator('li.alert-item[data-status="acknowledged"]').filter({ hasText: device }).waitFor();
      // The overview lists the open ones (from its one call): a new spike shows up there.
      await send(key, [reading(uid('boiler'), { temperature: 300 })]);
      await page.getByRole('link', { name: 'Overview', exact: true }).click();
      await page.getByRole('region', { name: 'Open alerts' }).locator('li').filter({ hasText: /above 100/ }).waitFor();
      w.assertClean();
    } finally {
      await w.close();
    }
  });

  test('rules are created, edited and deleted, with the server’s errors at the field', T, async () => {
    const { key } = await newTenant('rules');
    const w = await openPage();
    const { page } = w;
    try {
      await signIn(w, key, '/alerts?tab=rules');
      await page.getByRole('row').filter({ hasText: 'default-zscore' }).waitFor();
      await page.getByRole('button', { name: 'New rule' }).click();
      await page.getByLabel('Rule id').fill('cold');
      await page.getByLabel('Kind').selectOption('zscore');
      await page.getByLabel('Window (points)').fill('1');
      w.expectResponse(400, '/api/v1/rules');
      await page.getByRole('button', { name: 'Create rule' }).click();
      const field = page.locator('.field.invalid').filter({ hasText: 'Window (points)' });
      await field.waitFor();
      assert.match(await field.innerText(), /between 2 and 10000/);
      assert.equal(await page.getByLabel('Window (points)').getAttribute('aria-invalid'), 'true');
      await page.getByLabel('Window (points)').fill('30');
      await page.getByRole('button', { name: 'Create rule' }).click();
      const row = page.getByRole('row').filter({ hasText: 'cold' });
      await row.waitFor();
      assert.match(await row.innerText(), /30 points/);
      await row.getByRole('button', { name: 'Edit rule cold' }).click();
      await page.getByLabel('Threshold (σ)').fill('4.5');
      await page.getByRole('button', { name: 'Save rule' }).click();
      await page.getByRole('row').filter({ hasText: '4.5σ' }).waitFor();
      await page.getByRole('button', { name: 'Delete rule cold' }).click();
      await page.getByRole('button', { name: 'Delete cold' }).click();
      await page.getByRole('row').filter({ hasText: '4.5σ' }).waitFor({ state: 'detached' });
      const { body } = await call('/api/v1/rules', { key });
      assert.deepEqual(body.data.map((r) => r.id), ['default-zscore']);
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('analytics and SQL', () => {
  test('a funnel runs, and a SQL query runs and its CSV downloads', T, async () => {
    const { key } = await newTenant('analytics');
    const now = Date.now();
    const events = [];
    for (let u = 0; u < 4; u++) {
      const user = `u${u}`;
      events.push({ type: 'page_view', user_id: user, page_url: '/pricing', time: new Date(now - 600_000 + u * 1000).toISOString() });
      if (u < 3) events.push({ type: 'signup', user_id: user, time: new Date(now - 300_000 + u * 1000).toISOString() });
      if (u < 1) events.push({ type: 'purchase', user_id: user, properties: { plan: 'pro' }, time: new Date(now - 200_000).toISOString() });
    }
    await send(key, events);
    const w = await openPage();
    const { page } = w;
    try {
      await signIn(w, key, '/analytics');
      await page.getByLabel('Step 1 event type').fill('page_view');
      await page.getByLabel('Step 1 condition field').selectOption('page_url');
      await page.getByLabel('Step 1 condition value').fill('/pricing');
      await page.getByLabel('Step 2 event type').fill('signup');
      await page.getByRole('button', { name: 'Add step' }).click();
      await page.getByLabel('Step 3 event type').fill('purchase');
      await page.getByRole('button', { name: 'Run funnel' }).click();
      const result = page.locator('.funnel-result');
      await result.waitFor();
      const text = await result.innerText();
      assert.match(text, /25\.0% of 4 users/);
      const bars = result.getByRole('list', { name: 'Users per funnel step' });
      assert.equal(await bars.getByRole('listitem').count(), 3);
      assert.match(await bars.innerText(), /75\.0% of previous/);
      // The question is in the URL: reloading asks it again.
      assert.ok(page.url().includes('steps='));
      await w.goto(new URL(page.url()).pathname + new URL(page.url()).search);
      await page.locator('.funnel-result').getByText(/25\.0% of 4 users/).waitFor();

      // Retention and a user's timeline.
      await page.getByRole('tab', { name: 'Retention' }).click();
      await page.getByLabel('Cohort event').fill('page_view');
      await page.getByLabel('Return event').fill('signup');
      await page.getByRole('button', { name: 'Show retention' }).click();
      await page.getByRole('img', { name: /Retention heat map: 1 cohort by day/ }).waitFor();
      await page.getByRole('tab', { name: 'User timeline' }).click();
      await page.getByLabel('User id').fill('u0');
      await page.getByRole('button', { name: 'Show user' }).click();
      await page.getByRole('heading', { name: 'User u0' }).waitFor();

      // SQL.
      await page.getByRole('link', { name: 'SQL', exact: true }).click();
      const editor = page.getByLabel(/^SQL/);
      await editor.fill('SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type');
      await editor.press('Control+Enter');
      const meta = page.getByTestId('sql-meta');
      await meta.waitFor();
      assert.match(await meta.innerText(), /^3 rows · /);
      const table = page.getByRole('table', { name: 'Query result' });
      assert.match(await table.innerText(), /page_view\s+4/);
      assert.match(await table.locator('thead').innerText(), /Int64/);
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
      assert.equal(download.suggestedFilename(), 'eddy-query.csv');
      const csv = await readFile(await download.path(), 'utf8');
      assert.equal(csv.trim().split('\n')[0], 'type,n');
      assert.ok(csv.includes('signup,3'), csv);
      // The tables and their columns (from /api/v1/query/tables, no statement run); server
      // errors as they come.
      const queries = [];
      page.on('request', (r) => new URL(r.url()).pathname === '/api/v1/query' && queries.push(r.postData()));
      const tables = page.getByRole('complementary', { name: 'Tables' });
      for (const name of ['events', 'metric_samples', 'rollups', 'rollup_counts', 'alerts']) await tables.locator('summary code').getByText(name, { exact: true }).waitFor();
      await tables.locator('summary').filter({ hasText: 'metric_samples' }).click();
      await page.getByRole('button', { name: 'Insert column metric' }).waitFor();
      assert.match(await tables.locator('ul.columns > li').filter({ has: page.getByRole('button', { name: 'Insert column value' }) }).innerText(), /Float64/);
      await tables.locator('summary').filter({ hasText: 'rollup_counts' }).click();
      await page.getByRole('button', { name: 'Insert column dimension' }).waitFor();
      assert.deepEqual(queries, [], 'opening a table runs no statement');
      await editor.fill('SELECT nope FROM events');
      w.expectResponse(400, '/api/v1/query');
      await page.getByRole('button', { name: 'Run', exact: true }).click();
      const err = page.getByRole('alert');
      await err.waitFor();
      assert.match(await err.innerText(), /nope/);
      await editor.fill('SELECT count(*) FROM events');
      await page.getByRole('button', { name: 'Explain' }).click();
      await page.getByRole('heading', { name: 'Plan', exact: true }).waitFor();
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('admin', () => {
  test('a key is created (its secret shown once) and revoked', T, async () => {
    const { tenant } = await newTenant('keys');
    const w = await openPage();
    const { page } = w;
    try {
      await signIn(w, ADMIN_KEY, `/admin?tenant=${tenant.id}`);
      await page.getByRole('heading', { name: `Tenant ${tenant.name}` }).waitFor();
      await page.getByLabel('Key name').fill('reader');
      await page.getByRole('checkbox', { name: /^read \(/ }).check();
      await page.getByRole('checkbox', { name: /^write \(/ }).uncheck();
      await page.getByRole('button', { name: 'Create key' }).click();
      const secret = (await page.getByTestId('new-key-secret').innerText()).trim();
      assert.match(secret, /^eddy_/);
      const { body: who } = await call('/api/v1/whoami', { key: secret });
      assert.equal(who.tenant_id, tenant.id);
      assert.deepEqual(who.scopes, ['read']);
      await page.getByRole('button', { name: 'Copy secret' }).waitFor();
      await page.getByRole('button', { name: /hide the secret/ }).click();
      assert.equal(await page.getByTestId('new-key-secret').count(), 0);
      // Never shown again: not after a reload either.
      await w.goto(`/admin?tenant=${tenant.id}`);
      const row = page.getByRole('row').filter({ hasText: 'reader' });
      await row.waitFor();
      assert.equal(await page.getByText(secret).count(), 0);
      await row.getByRole('button', { name: 'Revoke key reader' }).click();
      await row.getByRole('button', { name: 'Confirm revoke' }).click();
      await row.waitFor({ state: 'detached' });
      await call('/api/v1/whoami', { key: secret, expect: [401] });

      // Retention and quota; a tenant deleted after typing its name.
      const settings = page.locator('form.settings');
      await settings.getByLabel('Retention').fill('90d');
      await settings.getByLabel('Quota (events/s)').fill('500');
      await page.getByRole('button', { name: 'Save settings' }).click();
      await page.getByText('Saved.').waitFor();
      const { body: t } = await call(`/api/v1/tenants/${tenant.id}`);
      assert.equal(t.retention, '90d');
      assert.equal(t.events_per_sec, 500);
      const del = page.getByRole('button', { name: `Delete ${tenant.name}` });
      assert.equal(await del.isDisabled(), true);
      await page.getByLabel(/to confirm/).fill(tenant.name);
      await del.click();
      await page.getByText('Choose a tenant').waitFor();
      await call(`/api/v1/tenants/${tenant.id}`, { expect: [404] });
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('isolation', () => {
  test('a second tenant’s key never sees the first tenant’s devices, alerts or SQL rows', T, async () => {
    const a = await newTenant('iso-a');
    const b = await newTenant('iso-b');
    const secretDevice = uid('a-only');
    await call('/api/v1/rules', { key: a.key, body: { id: 'a-rule', kind: 'threshold', op: '>', value: 10, severity: 'critical' } });
    await send(a.key, [reading(secretDevice, { pressure: 5 }), reading(secretDevice, { pressure: 50 })]);
    const bDevice = uid('b-dev');
    await send(b.key, [reading(bDevice, { level: 1 })]);
    const w = await openPage();
    const { page } = w;
    try {
      await signIn(w, b.key, '/devices');
      await page.getByRole('row').filter({ hasText: bDevice }).waitFor();
      // Live too: A's new device never reaches B's list; B's does.
      const lateA = uid('a-late');
      await send(a.key, [reading(lateA, { pressure: 1 })]);
      const lateB = uid('b-late');
      await send(b.key, [reading(lateB, { level: 2 })]);
      await page.getByRole('row').filter({ hasText: lateB }).waitFor();
      const html = await page.content();
      assert.ok(!html.includes(secretDevice) && !html.includes(lateA), 'B sees none of A’s devices');

      await page.getByRole('link', { name: 'Alerts', exact: true }).click();
      await page.getByText(/No open alerts/).waitFor();
      assert.ok(!(await page.content()).includes(secretDevice));

      await page.getByRole('link', { name: 'SQL', exact: true }).click();
      await page.getByLabel(/^SQL/).fill('SELECT device_id, count(*) AS n FROM events GROUP BY device_id ORDER BY device_id');
      await page.getByRole('button', { name: 'Run', exact: true }).click();
      await page.getByTestId('sql-meta').waitFor();
      const rows = await page.getByRole('table', { name: 'Query result' }).innerText();
      assert.ok(rows.includes(bDevice) && !rows.includes(secretDevice) && !rows.includes(lateA), rows);

      // A direct link to A's device shows nothing of it.
      w.expectResponse(404, `/api/v1/devices/${secretDevice}/metrics`);
      await w.goto(`/devices/${secretDevice}`);
      await page.getByText(/No readings from device/).waitFor();
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('performance', () => {
  test('time to interactive, a 24 h chart by the minute, and ack → screen latency at 1000 events/s', T, async () => {
    const { key } = await newTenant('bench');
    // A day of minutes for one device, oldest first (applied in order: no window is late).
    const device = uid('day');
    const now = Date.now();
    const start = Math.floor(now / 60_000) * 60_000 - 1439 * 60_000;
    const day = [];
    for (let i = 0; i < 1440; i++) day.push(reading(device, { power: 100 + 20 * Math.sin(i / 60) + (i % 7) }, new Date(start + i * 60_000 + 1000).toISOString()));
    await send(key, day);

    const w = await openPage();
    const { page } = w;
    try {
      // Time to interactive: navigation → the overview's figures on screen.
      await page.goto(`${BASE}/`, { waitUntil: 'commit' });
      await page.evaluate((k) => sessionStorage.setItem('eddy.apiKey', k), key);
      const t0 = Date.now();
      await w.goto('/overview');
      await until(page, () => {
        const v = [...document.querySelectorAll('.stat-value')].map((e) => e.textContent);
        return v.length >= 5 && v.every((t) => t && t !== '…');
      });
      bench.tti_ms = Date.now() - t0;
      bench.dom_interactive_ms = await page.evaluate(() => Math.round(performance.getEntriesByType('navigation')[0].domInteractive));

      // The 24 h chart: 1440 windows × avg, min, max.
      await page.getByRole('link', { name: 'Devices', exact: true }).click();
      await page.getByRole('link', { name: device }).click();
      await page.getByRole('radio', { name: '24h' }).check();
      const chart = page.locator('.chart[data-points="1440"]');
      await chart.waitFor();
      bench.chart_24h_render_ms = Number(await chart.getAttribute('data-render-ms'));
      bench.chart_24h_points = 1440;
      bench.chart_24h_series = 3;
      assert.equal(await page.locator('.charts').getAttribute('data-resolution'), '1m');

      // Latency: readings acknowledged over HTTP → their value on the device page.
      const live = uid('fast');
      await send(key, [reading(live, { seq: 0 })]);
      await w.goto(`/devices/${live}?range=15m`);
      await until(page, () => document.querySelector('output.latest-value[data-metric="seq"]')?.textContent === '0');
      await page.getByText('Live', { exact: true }).waitFor();
      await page.evaluate(() => {
        const seen = (window.__seen = []);
        const el = document.querySelector('output.latest-value[data-metric="seq"]');
        new MutationObserver(() => {
          const text = el.textContent;
          // On screen: the frame after the DOM changed.
          requestAnimationFrame(() => seen.push([Date.now(), text]));
        }).observe(el, { childList: true, characterData: true, subtree: true });
      });
      const acked = new Map();
      const rate = 1000;
      const seconds = 10;
      const perBatch = 10;
      const batches = (rate * seconds) / perBatch;
      let seq = 0;
      const inflight = [];
      const startAt = Date.now();
      for (let i = 0; i < batches; i++) {
        const due = startAt + (i * 1000 * perBatch) / rate;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // pacing the load, not a wait for a condition
        const vals = Array.from({ length: perBatch }, () => ++seq);
        // Each reading carries its time (1 ms apart, never ahead of now): batches in flight at
        // once are stamped in any order when the server times them, and the newest reading —
        // the one the page shows — must be the last one sent.
        inflight.push(
          send(key, vals.map((v) => reading(live, { seq: v }, new Date(startAt - perBatch + v).toISOString()))).then(() => {
            const t = Date.now();
            for (const v of vals) acked.set(v, t);
          }),
        );
      }
      await Promise.all(inflight);
      const sentSeconds = (Date.now() - startAt) / 1000;
      const last = seq;
      await until(page, (n) => document.querySelector('output.latest-value[data-metric="seq"]')?.textContent?.replace(/,/g, '') === String(n), last, 30_000);
      const seen = await page.evaluate(() => window.__seen);
      const lat = [];
      for (const [t, text] of seen) {
        const v = Number(String(text).replace(/,/g, ''));
        if (acked.has(v)) lat.push(t - acked.get(v));
      }
      lat.sort((x, y) => x - y);
      bench.latency_events_per_s = Math.round(seq / sentSeconds);
      bench.latency_run_s = Number(sentSeconds.toFixed(1));
      bench.latency_samples = lat.length;
      bench.latency_p50_ms = percentile(lat, 0.5);
      bench.latency_p99_ms = percentile(lat, 0.99);
      assert.ok(lat.length > 50, `only ${lat.length} values reached the screen`);
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('accessibility', () => {
  /** Controls of an aria snapshot that have no accessible name. */
  function unnamed(snapshot) {
    return snapshot
      .split('\n')
      .filter((l) => /^\s*- (button|link|textbox|searchbox|combobox|checkbox|radio|spinbutton|tab|slider|switch)(\s*\[[^\]]*\])*\s*:?\s*$/.test(l));
  }

  test('every control has an accessible name, and the keyboard reaches them with a visible focus', T, async () => {
    const { key } = await newTenant('a11y');
    const device = uid('meter');
    await send(key, [reading(device, { watts: 120 }), { type: 'page_view', user_id: 'u1', page_url: '/' }, { type: 'signup', user_id: 'u1' }]);
    const w = await openPage();
    const { page } = w;
    try {
      await signIn(w, key, '/overview');
      const views = [
        ['/overview', () => page.locator('.doughnut').waitFor()],
        ['/devices', () => page.getByRole('row').filter({ hasText: device }).waitFor()],
        [`/devices/${device}`, () => page.locator('.chart[data-render-ms]').waitFor()],
        ['/alerts', () => page.getByText(/No open alerts/).waitFor()],
        ['/alerts?tab=rules', () => page.getByRole('row').filter({ hasText: 'default-zscore' }).waitFor()],
        ['/analytics', () => page.getByRole('button', { name: 'Run funnel' }).waitFor()],
        ['/analytics?tab=retention', () => page.getByRole('button', { name: 'Show retention' }).waitFor()],
        ['/sql', () => page.getByRole('button', { name: 'Run', exact: true }).waitFor()],
      ];
      for (const [path, ready] of views) {
        await w.goto(path);
        await ready();
        const snap = await page.locator('body').ariaSnapshot();
        assert.deepEqual(unnamed(snap), [], `controls without a name on ${path}`);
      }
      // Tab from the top: the skip link, then the navigation, each with a visible outline.
      await w.goto('/overview');
      await page.locator('.doughnut').waitFor();
      const focused = [];
      for (let i = 0; i < 6; i++) {
        await page.keyboard.press('Tab');
        focused.push(
          await page.evaluate(() => {
            const el = document.activeElement;
            const cs = getComputedStyle(el);
            return { text: (el.textContent || el.getAttribute('aria-label') || '').trim(), outline: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0 };
          }),
        );
      }
      assert.equal(focused[0].text, 'Skip to content');
      assert.equal(focused[2].text, 'Overview');
      for (const f of focused) assert.ok(f.outline, `no visible focus on ${f.text}`);
      // The skip link lands in the main region.
      await page.getByRole('link', { name: 'Skip to content' }).focus();
      await page.keyboard.press('Enter');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'main');
      w.assertClean();
    } finally {
      await w.close();
    }
  });
});

describe('screenshots', { skip: !process.env.EDDY_SCREENSHOTS }, () => {
  test('every view, light and dark', T, async () => {
    // The other tests' tenants are done with: the Admin shot lists only this one's.
    await cleanup();
    const { key, tenant } = await newTenant('shots');
    const now = Date.now();
    const events = [];
    for (let i = 0; i < 60; i++) {
      const t = new Date(now - (60 - i) * 60_000).toISOString();
      events.push(reading('boiler-1', { temperature: 60 + 5 * Math.sin(i / 8), pressure: 1.2 + 0.05 * Math.cos(i / 5) }, t));
      events.push(reading('pump-7', { flow: 12 + (i % 5) }, t));
      events.push({ type: 'page_view', user_id: `u${i % 12}`, page_url: ['/', '/pricing', '/docs', '/blog'][i % 4], time: t });
      if (i % 3 === 0) events.push({ type: 'signup', user_id: `u${i % 12}`, time: t });
      if (i % 9 === 0) events.push({ type: 'error', user_id: `u${i % 12}`, time: t });
    }
    await send(key, events);
    await call('/api/v1/rules', { key, body: { id: 'boiler-hot', kind: 'threshold', op: '>', value: 80, metrics: ['temperature'], severity: 'critical' } });
    await send(key, [reading('boiler-1', { temperature: 95 })]);
    for (const scheme of ['light', 'dark']) {
      for (const [vw, label] of [[{ width: 1280, height: 900 }, ''], [{ width: 360, height: 780 }, '-360']]) {
        if (label && scheme === 'dark') continue;
        const w = await openPage({ colorScheme: scheme, viewport: vw });
        const { page } = w;
        try {
          await w.goto('/');
          await screenshot(page, `signin-${scheme}${label}`);
          await signIn(w, key, '/overview');
          await until(page, () => [...document.querySelectorAll('.stat-value')].every((e) => e.textContent !== '…'));
          await page.locator('.doughnut').waitFor();
          await screenshot(page, `overview-${scheme}${label}`);
          await page.getByRole('link', { name: 'Devices', exact: true }).click();
          await page.getByRole('row').filter({ hasText: 'boiler-1' }).waitFor();
          await screenshot(page, `devices-${scheme}${label}`);
          await page.getByRole('link', { name: 'boiler-1' }).click();
          await page.locator('.chart[data-render-ms]').nth(1).waitFor();
          await page.locator('output.latest-value').first().waitFor();
          await screenshot(page, `device-${scheme}${label}`);
          await page.getByRole('link', { name: 'Alerts', exact: true }).click();
          await page.locator('li.alert-item').first().waitFor();
          await screenshot(page, `alerts-${scheme}${label}`);
          await page.getByRole('tab', { name: 'Rules' }).click();
          await page.getByRole('row').filter({ hasText: 'boiler-hot' }).waitFor();
          await screenshot(page, `rules-${scheme}${label}`);
          await w.goto(`/analytics?steps=${encodeURIComponent(JSON.stringify(['page_view', 'signup']))}&frange=24h`);
          await page.locator('.funnel-result').waitFor();
          await screenshot(page, `analytics-funnel-${scheme}${label}`);
          await w.goto('/analytics?tab=retention&cohort=page_view&ret=signup&periods=7');
          await page.locator('.heatmap, .state.empty').first().waitFor();
          await screenshot(page, `analytics-retention-${scheme}${label}`);
          await w.goto('/analytics?tab=user&user=u3');
          await page.getByRole('heading', { name: 'User u3' }).waitFor();
          await screenshot(page, `analytics-user-${scheme}${label}`);
          await page.getByRole('link', { name: 'SQL', exact: true }).click();
          await page.getByRole('complementary', { name: 'Tables' }).locator('summary').filter({ hasText: 'events' }).first().click();
          await page.getByRole('button', { name: 'Insert column page_url' }).waitFor();
          await page.getByRole('button', { name: 'Run', exact: true }).click();
          await page.getByTestId('sql-meta').waitFor();
          await screenshot(page, `sql-${scheme}${label}`);
          await w.goto('/');
          await page.getByRole('button', { name: 'Sign out' }).click();
          await signIn(w, ADMIN_KEY, `/admin?tenant=${tenant.id}`);
          await page.getByRole('heading', { name: `Tenant ${tenant.name}` }).waitFor();
          await screenshot(page, `admin-${scheme}${label}`);
          w.assertClean();
        } finally {
          await w.close();
        }
      }
    }
  });
});
