// The live feed: one WebSocket to `/api/v1/ws` (subprotocol `eddy.v1`), authenticated by a
// first `auth` message (the key never goes into a URL), re-subscribed after every reconnect.
// Reconnects wait an exponential backoff with full jitter. Views say which channels and
// filters they want; the latest wish is what the server is asked for, and messages are
// checked against it again here (a message sent before a change can still arrive after it).

import type { LiveMessage } from './types';

export type Channel = 'events' | 'rollups' | 'alerts';

export interface Subscription {
  channels: Channel[];
  filters?: { device_id?: string; type?: string; metric?: string };
}

export type LiveState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'refused';

export interface LiveStatus {
  state: LiveState;
  /** When the next attempt starts (epoch ms), while reconnecting. */
  retryAt: number | null;
  /** Why the last connection ended, in words. */
  reason: string | null;
  /** Consecutive failed attempts. */
  attempts: number;
}

/** Backoff before attempt `attempt` (0-based): uniform in [0, min(cap, base·2^attempt)]. */
export function backoffDelay(attempt: number, random: () => number = Math.random, base = 500, cap = 30_000): number {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  // Never zero: a server that closes at once must not be hammered in a loop.
  return Math.max(100, Math.round(random() * ceiling));
}

/** Whether a message passes `sub` (the server's rules: device and metric filter every channel). */
export function passes(sub: Subscription, m: LiveMessage): boolean {
  const channel: Channel = m.type === 'event' ? 'events' : m.type === 'rollup' ? 'rollups' : 'alerts';
  if (!sub.channels.includes(channel)) return false;
  const f = sub.filters ?? {};
  switch (m.type) {
    case 'event':
      return (
        (!f.device_id || (m.data.device_id ?? '') === f.device_id) &&
        (!f.type || m.data.type === f.type) &&
        (!f.metric || Object.prototype.hasOwnProperty.call(m.data.metrics ?? {}, f.metric))
      );
    case 'rollup':
      return (!f.device_id || m.data.device_id === f.device_id) && (!f.metric || m.data.metric === f.metric);
    case 'alert':
      return (!f.device_id || m.data.device_id === f.device_id) && (!f.metric || m.data.metric === f.metric);
  }
}

type Handler = (m: LiveMessage) => void;

interface Wish {
  id: number;
  sub: Subscription;
  handler: Handler;
}

/** Client pings this often; a connection silent for twice as long is taken as dead. */
const PING_MS = 25_000;

export class LiveClient {
  private ws: WebSocket | null = null;
  private wishes: Wish[] = [];
  private nextId = 1;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private stopped = true;
  private statusListeners = new Set<(s: LiveStatus) => void>();
  private _status: LiveStatus = { state: 'idle', retryAt: null, reason: null, attempts: 0 };
  private sentKey = '';

  constructor(
    private readonly key: () => string | null,
    private readonly url: () => string = defaultUrl,
    private readonly onRefused: (reason: string) => void = () => {},
  ) {}

  get status(): LiveStatus {
    return this._status;
  }

  onStatus(fn: (s: LiveStatus) => void): () => void {
    this.statusListeners.add(fn);
    fn(this._status);
    return () => this.statusListeners.delete(fn);
  }

  private setStatus(s: Partial<LiveStatus>) {
    this._status = { ...this._status, ...s };
    for (const fn of this.statusListeners) fn(this._status);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stopPing();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000, 'signed out');
    }
    this.setStatus({ state: 'idle', retryAt: null, reason: null, attempts: 0 });
  }

  /** Reconnects now (the indicator's "reconnect" button), skipping the backoff wait. */
  reconnectNow(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return;
    this.connect();
  }

  /**
   * Asks for `sub` and hands its messages to `handler` until the returned function is called.
   * The newest wish is what the server is asked for; older ones still get what passes them.
   */
  subscribe(sub: Subscription, handler: Handler): () => void {
    const wish: Wish = { id: this.nextId++, sub, handler };
    this.wishes.push(wish);
    this.sendSubscription();
    return () => {
      this.wishes = this.wishes.filter((w) => w.id !== wish.id);
      this.sendSubscription();
    };
  }

  /** The union the server should send: all channels any wish wants, filters when all agree. */
  private wanted(): Subscription | null {
    if (this.wishes.length === 0) return null;
    const channels = new Set<Channel>();
    for (const w of this.wishes) for (const c of w.sub.channels) channels.add(c);
    const pick = (k: 'device_id' | 'type' | 'metric'): string | undefined => {
      const values = new Set(this.wishes.map((w) => w.sub.filters?.[k] ?? ''));
      if (values.size !== 1) return undefined;
      return [...values][0] || undefined;
    };
    const filters: Subscription['filters'] = {};
    for (const k of ['device_id', 'type', 'metric'] as const) {
      const v = pick(k);
      if (v) filters[k] = v;
    }
    return { channels: [...channels].sort(), filters };
  }

  private sendSubscription() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this._status.state !== 'open') return;
    const want = this.wanted();
    const msg = want
      ? { type: 'subscribe', channels: want.channels, filters: want.filters }
      : { type: 'unsubscribe' };
    const text = JSON.stringify(msg);
    if (text === this.sentKey) return;
    this.sentKey = text;
    ws.send(text);
  }

  private connect() {
    const key = this.key();
    if (!key || this.stopped) return;
    this.setStatus({ state: this._status.attempts > 0 ? 'reconnecting' : 'connecting', retryAt: null });
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url(), ['eddy.v1']);
    } catch {
      this.scheduleRetry('the live feed could not be opened');
      return;
    }
    this.ws = ws;
    this.sentKey = '';
    let refused = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'auth', key }));
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      let m: { type?: string; error?: string; message?: string };
      try {
        m = JSON.parse(typeof ev.data === 'string' ? ev.data : '') as typeof m;
      } catch {
        return;
      }
      switch (m.type) {
        case 'ready':
          this.setStatus({ state: 'open', attempts: 0, reason: null, retryAt: null });
          this.startPing();
          this.sendSubscription();
          return;
        case 'event':
        case 'rollup':
        case 'alert':
          this.dispatch(m as LiveMessage);
          return;
        case 'error':
          if (m.error === 'unauthenticated' || m.error === 'permission_denied') {
            refused = true;
            this.setStatus({ reason: m.message ?? 'the key was refused' });
          } else if (m.error === 'slow_consumer') {
            this.setStatus({ reason: 'fell behind the feed; reconnecting' });
          }
          return;
        default:
          return; // subscribed, pong
      }
    };
    ws.onerror = () => {
      // The close event follows with the code; nothing to do here.
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopPing();
      if (this.stopped) return;
      if (refused || ev.code === 1008) {
        this.setStatus({ state: 'refused', retryAt: null, reason: this._status.reason ?? 'the key was refused' });
        this.onRefused(this._status.reason ?? 'the key was refused');
        return;
      }
      const why =
        ev.code === 1013
          ? 'fell behind the feed'
          : ev.code === 1001
            ? 'the server closed the feed'
            : ev.code === 1006
              ? 'the connection was lost'
              : `the connection closed (${ev.code})`;
      this.scheduleRetry(why);
    };
  }

  private scheduleRetry(reason: string) {
    const attempts = this._status.attempts + 1;
    const delay = backoffDelay(attempts - 1);
    this.setStatus({ state: 'reconnecting', attempts, reason, retryAt: Date.now() + delay });
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  private startPing() {
    this.stopPing();
    this.lastHeard = Date.now();
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastHeard > 2 * PING_MS + 5000) {
        // Nothing heard for too long (not even our pongs): the connection is dead.
        ws.close(4000, 'no answer');
        return;
      }
      ws.send('{"type":"ping"}');
    }, PING_MS);
  }

  private stopPing() {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  private dispatch(m: LiveMessage) {
    for (const w of this.wishes) {
      if (passes(w.sub, m)) {
        try {
          w.handler(m);
        } catch (e) {
          // A view's handler failing must not stop the others.
          setTimeout(() => {
            throw e;
          });
        }
      }
    }
  }
}

function defaultUrl(): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/v1/ws`;
}
