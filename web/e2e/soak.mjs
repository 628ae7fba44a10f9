#!/usr/bin/env node
// Memory soak of the dashboard (not part of `npm run e2e`): a device page kept open for
// SOAK_MINUTES while its device sends readings of 3 metrics at SOAK_RATE events/s, with the
// overview (which follows the tenant's whole event feed) open in a second page beside it.
// Every SOAK_SAMPLE_S seconds each page's garbage is collected (CDP) and its JS heap, Blink's
// heap (Runtime.getHeapUsage's embedder heap: DOM, performance entries), DOM nodes, event
// listeners, documents and performance entries are sampled, with the points of the device's
// charts, the feed messages per second and how busy the page's main thread was. Prints a table
// and one line `EDDY_SOAK {…}`: heap after the warm-up minute against the last sample, the
// least-squares slope (MB/min) over the samples after the warm-up (JS heap, and JS + Blink
// heap), max nodes, the load achieved and the feed's drops (slow-consumer disconnects).
//
//   EDDY_URL=http://127.0.0.1:8080 EDDY_ADMIN_KEY=$(cat data/admin.key) node e2e/soak.mjs [minutes] [rate]
//
// Environment: EDDY_URL, EDDY_ADMIN_KEY, EDDY_CHROMIUM (/usr/bin/chromium), SOAK_MINUTES (10),
// SOAK_RATE (1000 events/s), SOAK_BATCH (events per request, 20), SOAK_SAMPLE_S (30),
// SOAK_OVERVIEW=0 (no overview page), SOAK_HEAP_DIFF=<dir> (heap snapshots of both pages after
// the warm-up and at the end, saved there, and the constructors that grew most between them).
//
// It makes its own tenant and key and deletes them at the end (also on an error or Ctrl-C).
// Loopback only; it stops by itself after SOAK_MINUTES plus a few minutes at most. It exits 1
// on a console or page error or a failed request on either page, when the device page's latest
// value has not changed for 10 s, when the overview's live rate stays at zero for 10 s, or when
// more than 20 requests fail. Memory growth is reported, not asserted.

import { readdirSync, readFileSync, mkdirSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { BASE, cleanup, closeBrowser, getBrowser, newTenant, openPage, send, signIn, uid, until, percentile } from './helpers.mjs';

const arg = (i, env, dflt) => Number(process.argv[2 + i] ?? process.env[env] ?? dflt);
const MINUTES = arg(0, 'SOAK_MINUTES', 10);
const RATE = arg(1, 'SOAK_RATE', 1000);
const BATCH = Math.max(1, Math.round(Number(process.env.SOAK_BATCH || 20)));
const SAMPLE_S = Number(process.env.SOAK_SAMPLE_S || 30);
const OVERVIEW = process.env.SOAK_OVERVIEW !== '0';
const HEAP_DIFF = process.env.SOAK_HEAP_DIFF || '';
const WARMUP_S = 60;
/** The latest value must change this often (or once every 3 batches at a very low rate). */
const STALE_MS = Math.max(10_000, (3 * BATCH * 1000) / RATE);
const MAX_INFLIGHT = 32;
const RANGE = '15m';
/** Past the soak itself: sign-in and page loads before it, snapshots and cleanup after. */
const MARGIN_S = 150 + (HEAP_DIFF ? 120 : 0);

for (const [name, v] of [['SOAK_MINUTES', MINUTES], ['SOAK_RATE', RATE], ['SOAK_SAMPLE_S', SAMPLE_S]]) {
  if (!(v > 0)) {
    console.error(`soak: ${name} must be a positive number`);
    process.exit(2);
  }
}
const host = new URL(BASE).hostname;
if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) {
  console.error(`soak: loopback only; EDDY_URL is ${BASE}`);
  process.exit(2);
}

const log = (...a) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms)); // pacing and sampling, not waits for conditions
const round = (v, d = 2) => (v == null || !Number.isFinite(v) ? null : Number(v.toFixed(d)));

// ---- failure, shutdown, bounds ----------------------------------------------------------------

let failure = null;
function fail(why) {
  if (!failure) {
    failure = why;
    log(`FAIL: ${why}`);
  }
}

let stopping = false;
let loadDone = Promise.resolve();
let shutdownPromise = null;
/** Stops the load, closes the browser and deletes the tenant; once, each step bounded. */
function shutdown() {
  shutdownPromise ??= (async () => {
    stopping = true;
    const bounded = (p, ms, what) =>
      Promise.race([p.catch((e) => log(`${what}: ${e.message}`)), sleep(ms).then(() => log(`${what}: gave up after ${ms / 1000} s`))]);
    await bounded(loadDone, 15_000, 'waiting for the requests in flight');
    await bounded(closeBrowser(), 15_000, 'closing the browser');
    await bounded(cleanup(), 60_000, 'deleting the tenant');
  })();
  return shutdownPromise;
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    fail(`interrupted (${sig})`);
    shutdown().finally(() => process.exit(130));
  });
}
const deadline = setTimeout(() => {
  fail(`still running ${MINUTES} min + ${MARGIN_S} s after the start`);
  shutdown().finally(() => process.exit(1));
}, (MINUTES * 60 + MARGIN_S) * 1000);

// ---- chromium's processes (their memory beside the pages' heaps) ---------------------------

/** Proportional set size (MB) of every process below this script: the browser, its renderers, GPU and utility processes. */
function chromiumPss() {
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  let kb = 0;
  const walk = (pid) => {
    for (const c of kids.get(pid) ?? []) {
      try {
        kb += Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${c}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
      } catch {
        // gone meanwhile
      }
      walk(c);
    }
  };
  walk(process.pid);
  return kb / 1024;
}

// ---- pages ----------------------------------------------------------------------------------

function reading(device, metrics, time) {
  return { type: 'reading', device_id: device, metrics, time };
}

/** RFC 3339 with microseconds (each reading its own time, 1 µs apart at the most). */
function isoMicros(us) {
  const ms = Math.floor(us / 1000);
  return `${new Date(ms).toISOString().slice(0, -1)}${String(Math.floor(us - ms * 1000)).padStart(3, '0')}Z`;
}

/** A page under watch: its live feed's sockets and errors now, its CDP session by `instrument`. */
function track(w, name) {
  const p = { name, w, cdp: null, samples: [], sockets: 0, feedErrors: [], frames: 0, prev: null };
  // Why the live feed ends, when it does: the server's error message before it closes.
  const watchSocket = (ws) => {
    if (!ws.url().includes('/api/v1/ws')) return;
    p.sockets++;
    ws.on('framereceived', (f) => {
      p.frames++;
      if (typeof f.payload === 'string' && f.payload.includes('"type":"error"')) {
        const m = JSON.parse(f.payload);
        p.feedErrors.push(m.error);
        log(`${name} page: the feed said ${m.error}: ${m.message}`);
      }
    });
  };
  w.page.on('websocket', watchSocket);
  return p;
}

async function instrument(p) {
  p.cdp = await p.w.context.newCDPSession(p.w.page);
  await p.cdp.send('Performance.enable');
}

/** A forced GC, then the page's counters. */
async function measure(p, t_s) {
  await p.cdp.send('HeapProfiler.collectGarbage');
  const { metrics } = await p.cdp.send('Performance.getMetrics');
  const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
  const usage = await p.cdp.send('Runtime.getHeapUsage').catch(() => ({}));
  const s = {
    t_s,
    heap_mb: round(m.JSHeapUsedSize / 1048576, 3),
    nodes: m.Nodes,
    listeners: m.JSEventListeners,
    documents: m.Documents,
  };
  // Since the last sample: feed messages per second, and the share of the time the page's main
  // thread was busy (Chromium's TaskDuration; 1 = saturated).
  const now = Date.now();
  if (p.prev) {
    const dt = (now - p.prev.at) / 1000;
    s.msgs_per_s = Math.round((p.frames - p.prev.frames) / dt);
    s.main_busy = round((m.TaskDuration - p.prev.task) / dt, 2);
  }
  p.prev = { at: now, frames: p.frames, task: m.TaskDuration };
  if (usage.embedderHeapUsedSize != null) s.embedder_mb = round(usage.embedderHeapUsedSize / 1048576, 3);
  // User Timing entries held (the charts' `eddy:chart-render` measures); counted after the
  // heap figures, so the wrappers this makes are garbage by the next sample's collection.
  s.perf_entries = await p.w.page.evaluate(() => performance.getEntriesByType('measure').length + performance.getEntriesByType('mark').length);
  return s;
}

async function heapSnapshot(p, file) {
  const out = createWriteStream(file);
  const onChunk = ({ chunk }) => out.write(chunk);
  p.cdp.on('HeapProfiler.addHeapSnapshotChunk', onChunk);
  try {
    await p.cdp.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false, captureNumericValue: false });
  } finally {
    p.cdp.off('HeapProfiler.addHeapSnapshotChunk', onChunk);
    await new Promise((r) => out.end(r));
  }
}

/** Count and self size per (node type, constructor name) of a .heapsnapshot file. */
function heapSummary(file) {
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((k) => f.indexOf(k));
  const by = new Map();
  for (let i = 0; i < snap.nodes.length; i += f.length) {
    const type = types[snap.nodes[i + iType]];
    let name = snap.strings[snap.nodes[i + iName]];
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '(string)';
    else if (type === 'code' || type === 'hidden' || type === 'number') name = `(${type})`;
    else if (name.length > 60) name = `${name.slice(0, 57)}...`;
    const key = `${type}:${name}`;
    const e = by.get(key) ?? { count: 0, size: 0 };
    e.count++;
    e.size += snap.nodes[i + iSize];
    by.set(key, e);
  }
  return by;
}

function heapGrowth(a, b, top = 12) {
  const rows = [];
  for (const [k, v] of b) {
    const o = a.get(k) ?? { count: 0, size: 0 };
    rows.push({ what: k, count: v.count - o.count, kb: round((v.size - o.size) / 1024, 1) });
  }
  return rows.sort((x, y) => y.kb - x.kb).slice(0, top);
}

// ---- the soak -------------------------------------------------------------------------------

const result = { ok: false, minutes: MINUTES, rate_target: RATE, batch: BATCH, range: RANGE, url: BASE };
let chromiumVersion = '';

async function main() {
  const { key } = await newTenant('soak');
  const device = uid('soak');
  const metricsOf = (v) => ({ seq: v, temperature: round(20 + 5 * Math.sin(v / 20_000), 3), humidity: 40 + (v % 200) / 10 });
  // 20 minutes of history (a reading every 5 s, oldest first: no window is late), so that the
  // 15-minute chart is full from the start and the soak shows its points capped as it slides.
  const seedStart = Date.now() - 20 * 60_000;
  await send(key, Array.from({ length: 240 }, (_, i) => reading(device, { ...metricsOf(i), seq: 0 }, isoMicros((seedStart + i * 5000) * 1000))));

  chromiumVersion = (await getBrowser()).version();
  const pages = [];
  const dw = await openPage();
  const dev = track(dw, 'device');
  await signIn(dw, key, `/devices/${device}?range=${RANGE}`);
  await until(dw.page, () => document.querySelector('output.latest-value[data-metric="seq"]')?.textContent === '0');
  await until(dw.page, () => document.querySelectorAll('.chart[data-render-ms]').length === 3);
  await until(dw.page, () => document.querySelector('.live-indicator')?.getAttribute('data-state') === 'open');
  await instrument(dev);
  pages.push(dev);

  let ovw = null;
  if (OVERVIEW) {
    const ow = await openPage();
    ovw = track(ow, 'overview');
    await signIn(ow, key, '/overview');
    await until(ow.page, () => {
      const v = [...document.querySelectorAll('.stat-value')].map((e) => e.textContent);
      return v.length >= 5 && v.every((t) => t && t !== '…');
    }, undefined, 60_000);
    await until(ow.page, () => document.querySelector('.live-indicator')?.getAttribute('data-state') === 'open');
    await instrument(ovw);
    pages.push(ovw);
  }
  const visibility = await Promise.all(pages.map((p) => p.w.page.evaluate(() => document.visibilityState)));
  log(`device ${device}, pages ${pages.map((p, i) => `${p.name} (${visibility[i]})`).join(', ')}`);
  if (visibility.some((v) => v !== 'visible')) log('warning: a page is hidden; its animation frames (and live batching) may be throttled');

  // Load: batches of BATCH readings paced by the wall clock, at most MAX_INFLIGHT requests at
  // once. Each reading carries its own time, spaced 1/RATE apart and never ahead of now, so
  // that batches in flight together cannot reorder what the page must show last. When the
  // server falls more than a second behind, the schedule moves on (the rate achieved drops)
  // instead of piling up a backlog.
  const interval = (BATCH * 1000) / RATE;
  const inflight = new Set();
  let seq = 0;
  let maxAcked = 0;
  let sent = 0;
  let acked = 0;
  let errors = 0;
  let lastError = '';
  let shiftMs = 0;
  let slipped = 0;
  const t0 = Date.now();
  const endAt = t0 + MINUTES * 60_000;
  const load = async () => {
    for (let i = 0; !stopping && !failure; i++) {
      let due = t0 + shiftMs + i * interval;
      if (due >= endAt) break;
      const late = Date.now() - due;
      if (late > 1000) {
        shiftMs += late - 1000;
        slipped++;
        due = t0 + shiftMs + i * interval;
      }
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      while (inflight.size >= MAX_INFLIGHT) await Promise.race(inflight);
      if (stopping || failure) break;
      const first = seq + 1;
      const events = [];
      for (let k = 0; k < BATCH; k++) {
        const v = ++seq;
        const us = Math.round((t0 + shiftMs) * 1000 + ((v - BATCH) * 1e6) / RATE);
        events.push(reading(device, metricsOf(v), isoMicros(us)));
      }
      const last = seq;
      sent += BATCH;
      const p = send(key, events).then(
        () => {
          acked += last - first + 1;
          if (last > maxAcked) maxAcked = last;
        },
        (e) => {
          if (stopping) return;
          errors++;
          lastError = e.message;
          if (errors > 20) fail(`${errors} requests failed; last: ${lastError}`);
        },
      );
      const tracked = p.finally(() => inflight.delete(tracked));
      inflight.add(tracked);
    }
    await Promise.all(inflight);
  };
  loadDone = load();
  const loadEnded = loadDone.then(() => Date.now());

  // Watch: once a second, the device page's latest value (it must keep changing), how far it
  // is behind the acknowledged readings, the charts' points and newest window, the overview's
  // live rate; and every page's problems.
  const watch = { behind: [], maxPoints: 0, chartAgeMax: 0, reconnects: 0, transitions: [], overviewZeroSince: null };
  let shown = '0';
  let shownSince = Date.now();
  let states = { device: 'open', overview: 'open' };
  const check = async () => {
    for (const p of pages) {
      const probs = p.w.problems();
      if (probs.length) fail(`problems on the ${p.name} page:\n  ${probs.join('\n  ')}`);
    }
    const d = await dw.page.evaluate(() => ({
      v: document.querySelector('output.latest-value[data-metric="seq"]')?.textContent ?? '',
      charts: [...document.querySelectorAll('.chart[data-points]')].map((c) => [Number(c.getAttribute('data-points')), c.getAttribute('data-last')]),
      state: document.querySelector('.live-indicator')?.getAttribute('data-state') ?? '',
    }));
    const now = Date.now();
    if (d.v !== shown) {
      shown = d.v;
      shownSince = now;
    } else if (now - shownSince > STALE_MS && now < endAt) {
      fail(`the device page's latest value has shown ${shown} for ${Math.round((now - shownSince) / 1000)} s (${maxAcked} acknowledged, live ${d.state})`);
    }
    const v = Number(d.v.replace(/,/g, ''));
    if (Number.isFinite(v)) watch.behind.push(Math.max(0, maxAcked - v));
    for (const [n, last] of d.charts) {
      watch.maxPoints = Math.max(watch.maxPoints, n);
      const x = last ? JSON.parse(last)[0] : null;
      if (x != null) watch.chartAgeMax = Math.max(watch.chartAgeMax, now / 1000 - x);
    }
    if (d.state !== states.device) {
      watch.transitions.push({ t_s: Math.round((now - t0) / 1000), page: 'device', state: d.state });
      log(`device page: live ${d.state}`);
      if (d.state !== 'open') watch.reconnects++;
    }
    states.device = d.state;
    if (ovw) {
      const o = await ovw.w.page.evaluate(() => ({
        rate: document.querySelector('[data-testid="live-rate"]')?.textContent ?? '',
        state: document.querySelector('.live-indicator')?.getAttribute('data-state') ?? '',
      }));
      if (o.state !== states.overview) {
        watch.transitions.push({ t_s: Math.round((now - t0) / 1000), page: 'overview', state: o.state });
        log(`overview page: live ${o.state}`);
        if (o.state !== 'open') watch.reconnects++;
      }
      states.overview = o.state;
      if (/^0(\/s)?$/.test(o.rate.trim()) && now - t0 > STALE_MS && now < endAt) {
        watch.overviewZeroSince ??= now;
        if (now - watch.overviewZeroSince > STALE_MS) fail(`the overview's live rate has shown ${o.rate} for ${STALE_MS / 1000} s (live ${o.state})`);
      } else watch.overviewZeroSince = null;
    }
  };

  const snapshots = {};
  const takeSnapshots = async (label) => {
    mkdirSync(HEAP_DIFF, { recursive: true });
    for (const p of pages) {
      const file = join(HEAP_DIFF, `${p.name}-${label}.heapsnapshot`);
      await p.cdp.send('HeapProfiler.collectGarbage');
      await heapSnapshot(p, file);
      (snapshots[p.name] ??= {})[label] = file;
      log(`heap snapshot ${file}`);
    }
  };

  const nSamples = Math.floor((MINUTES * 60) / SAMPLE_S);
  let k = 0;
  let snapWarm = false;
  log(`soak: ${MINUTES} min at ${RATE} events/s in batches of ${BATCH}, a sample every ${SAMPLE_S} s`);
  while (!failure && k <= nSamples) {
    const at = t0 + k * SAMPLE_S * 1000;
    if (Date.now() >= at) {
      const t_s = Math.round((Date.now() - t0) / 1000);
      for (const p of pages) {
        const s = await measure(p, t_s);
        if (p === dev) s.points = (await dw.page.evaluate(() => [...document.querySelectorAll('.chart[data-points]')].map((c) => Number(c.getAttribute('data-points'))))) ?? [];
        p.samples.push(s);
      }
      const s = dev.samples.at(-1);
      s.chromium_pss_mb = round(chromiumPss(), 1);
      log(`t=${t_s}s sent ${sent} acked ${acked} | device heap ${s.heap_mb} MB nodes ${s.nodes} listeners ${s.listeners}${ovw ? ` | overview heap ${ovw.samples.at(-1).heap_mb} MB nodes ${ovw.samples.at(-1).nodes}` : ''}`);
      if (HEAP_DIFF && !snapWarm && t_s >= WARMUP_S) {
        snapWarm = true;
        await takeSnapshots('warm');
      }
      k++;
      continue;
    }
    await check();
    await sleep(Math.min(1000, Math.max(0, at - Date.now())));
  }
  if (HEAP_DIFF && snapWarm && !failure) await takeSnapshots('end');
  stopping = true;
  const sentEnd = await loadEnded;
  for (const p of pages) {
    const probs = p.w.problems();
    if (probs.length) fail(`problems on the ${p.name} page:\n  ${probs.join('\n  ')}`);
  }

  const secs = (Math.min(sentEnd, endAt) - t0) / 1000;
  Object.assign(result, {
    chromium: chromiumVersion,
    device,
    run_s: round(secs, 1),
    events_sent: sent,
    events_acked: acked,
    rate_achieved: Math.round(acked / secs),
    request_errors: errors,
    ...(lastError ? { last_error: lastError } : {}),
    schedule_slips: slipped,
    live_drops: watch.reconnects,
    feed_sockets: Object.fromEntries(pages.map((p) => [p.name, p.sockets])),
    feed_errors: Object.fromEntries(pages.map((p) => [p.name, p.feedErrors.length])),
    live_transitions: watch.transitions,
    behind_events_p50: percentile([...watch.behind].sort((a, b) => a - b), 0.5),
    behind_events_max: watch.behind.length ? Math.max(...watch.behind) : null,
    chart_points_max: watch.maxPoints,
    chart_newest_window_age_max_s: round(watch.chartAgeMax, 0),
  });
  for (const p of pages) Object.assign(result, summarize(p));
  result.samples = dev.samples;
  if (ovw) result.overview_samples = ovw.samples;
  if (HEAP_DIFF && snapshots.device?.end) {
    result.heap_growth = {};
    for (const p of pages) {
      const s = snapshots[p.name];
      result.heap_growth[p.name] = heapGrowth(heapSummary(s.warm), heapSummary(s.end));
    }
  }
  result.ok = !failure;
}

/** Least-squares slope (per minute) of `key` over `samples`. */
function slope(samples, key) {
  const pts = samples.filter((s) => s[key] != null);
  if (pts.length < 2) return null;
  const n = pts.length;
  const mx = pts.reduce((a, s) => a + s.t_s / 60, 0) / n;
  const my = pts.reduce((a, s) => a + s[key], 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const s of pts) {
    sxy += (s.t_s / 60 - mx) * (s[key] - my);
    sxx += (s.t_s / 60 - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : null;
}

/**
 * Warm-up sample vs last, least-squares slopes after the warm-up (JS heap; JS heap plus
 * Blink's heap, where DOM and performance entries live), max nodes and listeners.
 */
function summarize(p) {
  const pre = p.name === 'device' ? '' : `${p.name}_`;
  for (const s of p.samples) if (s.embedder_mb != null) s.total_mb = round(s.heap_mb + s.embedder_mb, 3);
  const after = p.samples.filter((s) => s.t_s >= WARMUP_S);
  const first = after[0];
  const last = p.samples.at(-1);
  const max = (k, list = p.samples) => (list.length ? Math.max(...list.map((s) => s[k] ?? 0)) : null);
  return {
    [`${pre}heap_warm_mb`]: first?.heap_mb ?? null,
    [`${pre}heap_last_mb`]: last?.heap_mb ?? null,
    [`${pre}heap_slope_mb_per_min`]: round(slope(after, 'heap_mb'), 4),
    [`${pre}total_heap_warm_mb`]: first?.total_mb ?? null,
    [`${pre}total_heap_last_mb`]: last?.total_mb ?? null,
    [`${pre}total_heap_slope_mb_per_min`]: round(slope(after, 'total_mb'), 4),
    [`${pre}nodes_warm`]: first?.nodes ?? null,
    [`${pre}nodes_max`]: max('nodes'),
    [`${pre}nodes_max_after_warmup`]: max('nodes', after),
    [`${pre}listeners_max`]: max('listeners'),
    [`${pre}perf_entries_last`]: last?.perf_entries ?? null,
    ...(last?.chromium_pss_mb != null
      ? { chromium_pss_warm_mb: first?.chromium_pss_mb ?? null, chromium_pss_last_mb: last.chromium_pss_mb, chromium_pss_slope_mb_per_min: round(slope(after, 'chromium_pss_mb'), 3) }
      : {}),
  };
}

function table() {
  const pages = [['device', result.samples ?? []], ['overview', result.overview_samples ?? []]].filter(([, s]) => s.length);
  if (!pages.length) return;
  const cols = ['t_s', 'heap_mb', 'embedder_mb', 'nodes', 'listeners', 'documents', 'perf_entries', 'points', 'msgs_per_s', 'main_busy', 'chromium_pss_mb'];
  const fmt = (v) => (Array.isArray(v) ? v.join('/') : v == null ? '' : String(v));
  for (const [name, samples] of pages) {
    const used = cols.filter((c) => samples.some((s) => s[c] != null));
    const rows = [used, ...samples.map((s) => used.map((c) => fmt(s[c])))];
    const widths = used.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    console.log(`\n${name} page`);
    for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i])).join('  '));
  }
  const pre = (n) => (n === 'device' ? '' : `${n}_`);
  console.log();
  for (const [name] of pages) {
    console.log(
      `${name}: JS heap ${result[`${pre(name)}heap_warm_mb`]} MB after ${WARMUP_S} s → ${result[`${pre(name)}heap_last_mb`]} MB at the end, ` +
        `slope ${result[`${pre(name)}heap_slope_mb_per_min`]} MB/min (with Blink's heap: ${result[`${pre(name)}total_heap_warm_mb`]} → ${result[`${pre(name)}total_heap_last_mb`]} MB, ` +
        `${result[`${pre(name)}total_heap_slope_mb_per_min`]} MB/min); nodes ${result[`${pre(name)}nodes_warm`]} → max ${result[`${pre(name)}nodes_max`]}; ` +
        `listeners max ${result[`${pre(name)}listeners_max`]}`,
    );
  }
  if (result.rate_achieved != null) {
    console.log(
      `load: ${result.events_acked} of ${result.events_sent} events acknowledged in ${result.run_s} s = ${result.rate_achieved}/s (target ${RATE}), ` +
        `${result.request_errors} failed requests, ${result.schedule_slips} schedule slips; page behind by p50 ${result.behind_events_p50} / max ${result.behind_events_max} events; ` +
        `chart points max ${result.chart_points_max}`,
    );
  }
  for (const [name, rows] of Object.entries(result.heap_growth ?? {})) {
    console.log(`\n${name}: grew most between the warm-up and the end (heap snapshots)`);
    for (const r of rows) console.log(`  ${String(r.kb).padStart(10)} KB  ${String(r.count).padStart(8)}  ${r.what}`);
  }
}

let code = 0;
try {
  await main();
} catch (e) {
  fail(e.stack || e.message);
} finally {
  clearTimeout(deadline);
  await shutdown();
  if (failure) {
    result.ok = false;
    result.error = failure.split('\n')[0];
    code = 1;
  }
  table();
  const { heap_growth, ...line } = result;
  console.log(`EDDY_SOAK ${JSON.stringify(line)}`);
  if (failure) console.error(`\nsoak FAILED: ${failure}`);
}
process.exit(code);
