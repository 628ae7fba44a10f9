// Shared pieces of the browser tests: the server under test, its admin API, the browser, and
// a watch over each page that fails the test on console errors, page errors, failed requests
// and error responses the test did not expect.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = (process.env.EDDY_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ADMIN_KEY = process.env.EDDY_ADMIN_KEY || '';
export const SCREENSHOTS = process.env.EDDY_SCREENSHOTS || '';

if (!ADMIN_KEY) throw new Error('set EDDY_ADMIN_KEY to the admin key of the server at EDDY_URL');

export function uid(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** A call of the server's API; throws with the body on an unexpected status. */
export async function call(path, { key = ADMIN_KEY, method, body, expect = [200, 201, 204], headers = {} } = {}) {
  const resp = await fetch(BASE + path, {
    method: method ?? (body === undefined ? 'GET' : 'POST'),
    headers: { 'x-api-key': key, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await resp.text();
  if (!expect.includes(resp.status)) throw new Error(`${method ?? 'GET'} ${path} answered ${resp.status}: ${text}`);
  if (!text) return { status: resp.status, body: null };
  try {
    return { status: resp.status, body: JSON.parse(text) };
  } catch {
    return { status: resp.status, body: text };
  }
}

const created = [];

/** A new tenant with a read+write key: `{tenant, key}`. Deleted by `cleanup()`. */
export async function newTenant(label = 'e2e') {
  const { body: tenant } = await call('/api/v1/tenants', { body: { name: uid(label) } });
  created.push(tenant.id);
  const { body: key } = await call(`/api/v1/tenants/${tenant.id}/keys`, { body: { name: 'e2e', scopes: ['read', 'write'] } });
  return { tenant, key: key.key, keyId: key.id };
}

export async function cleanup() {
  for (const id of created.splice(0)) await call(`/api/v1/tenants/${id}`, { method: 'DELETE', expect: [204, 404] });
}

/** Sends events (native API) with `key`; the answer once they are durable. */
export async function send(key, events) {
  const { body } = await call('/api/v1/events', { key, body: events });
  assert.equal(body.accepted + body.duplicates, Array.isArray(events) ? events.length : 1, JSON.stringify(body));
  return body;
}

let browser;

export async function getBrowser() {
  browser ??= await chromium.launch({
    executablePath: process.env.EDDY_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  return browser;
}

export async function closeBrowser() {
  if (browser) await browser.close();
  browser = undefined;
}

/**
 * A fresh page (own context: own sessionStorage) watched for problems. `expectResponse(status,
 * urlPart)` declares an error answer the test provokes; `problems()` lists the rest.
 */
export async function openPage({ colorScheme = 'light', viewport = { width: 1280, height: 900 } } = {}) {
  const b = await getBrowser();
  const context = await b.newContext({ viewport, colorScheme, acceptDownloads: true, baseURL: BASE });
  const page = await context.newPage();
  const problems = [];
  const expected = [];
  const consoleText = [];
  let navigating = 0;

  const isExpected = (status, url) => {
    const i = expected.findIndex((e) => e.status === status && url.includes(e.urlPart) && e.left !== 0);
    if (i < 0) return false;
    if (expected[i].left > 0) expected[i].left--;
    return true;
  };

  page.on('console', (m) => {
    consoleText.push(m.text());
    if (m.type() !== 'error') return;
    // Chromium reports every error answer as "Failed to load resource"; those the test
    // provoked are expected, the rest are counted through their response below.
    const failed = /Failed to load resource: the server responded with a status of (\d+)/.exec(m.text());
    if (failed) {
      const url = m.location()?.url ?? '';
      if (expected.some((e) => e.status === Number(failed[1]) && url.includes(e.urlPart))) return;
    }
    problems.push(`console error: ${m.text()} (${m.location()?.url ?? ''})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    // A navigation started by the test aborts what the previous page still had in flight.
    if (navigating > 0 && why.includes('ERR_ABORTED')) return;
    problems.push(`request failed: ${r.method()} ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !isExpected(r.status(), r.url())) problems.push(`unexpected ${r.status()}: ${r.request().method()} ${r.url()}`);
  });

  return {
    page,
    context,
    expectResponse(status, urlPart, times = 1) {
      expected.push({ status, urlPart, left: times });
    },
    problems: () => problems.slice(),
    consoleText: () => consoleText.slice(),
    /** Navigates (a test's own navigation may abort the old page's requests). */
    async goto(path) {
      navigating++;
      try {
        await page.goto(BASE + path, { waitUntil: 'domcontentloaded' });
      } finally {
        // The old page's aborts are reported asynchronously; give them this turn.
        setTimeout(() => navigating--, 500);
      }
    },
    async close() {
      navigating++;
      await context.close();
    },
    assertClean() {
      assert.deepEqual(problems, [], `problems on the page:\n${problems.join('\n')}`);
    },
  };
}

/** Signs in through the form and waits for the navigation. */
export async function signIn(w, key, path = '/') {
  await w.goto(path);
  await w.page.getByLabel('API key').fill(key);
  await w.page.getByRole('button', { name: 'Sign in' }).click();
  await w.page.getByRole('navigation', { name: 'Main' }).waitFor();
}

/** Waits until `fn` (run in the page) returns a truthy value; returns it. */
export async function until(page, fn, arg, timeout = 20_000) {
  const h = await page.waitForFunction(fn, arg, { timeout, polling: 'raf' });
  return h.jsonValue();
}

/** Waits until `fn()` (in the test) is truthy, checking every 10 ms; returns its value. */
export async function eventually(fn, timeout = 20_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeout} ms: ${fn}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function screenshot(page, name) {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  // From the top: a page scrolled by the last click would draw its sticky header mid-image.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

export function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}
