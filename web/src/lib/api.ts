// The HTTP client: every call carries the signed-in key in `x-api-key`, and every error comes
// back as an `ApiError` with Eddy's own code, message and per-field errors.

import type { ErrorBody, FieldError } from './types';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly errors: FieldError[];
  readonly retryAfter: number | null;

  constructor(status: number, body: Partial<ErrorBody>, retryAfter: number | null = null) {
    super(body.message || `the server answered ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = body.error || (status === 0 ? 'unreachable' : 'error');
    this.errors = Array.isArray(body.errors) ? body.errors : [];
    this.retryAfter = retryAfter;
  }

  /**
   * What the server said about `field`: the reason of its entry in `errors` (rules:
   * `threshold`; events: `metrics.temp`), else the message when it names the field the way
   * Eddy's messages do (`` `retention` … ``); `undefined` when it did not speak of it.
   */
  fieldError(field: string): string | undefined {
    const listed = this.errors.find((e) => e.field === field);
    if (listed) return listed.reason;
    if (this.status === 400 && this.errors.length === 0 && this.message.includes(`\`${field}\``)) return this.message;
    return undefined;
  }
}

type KeySource = () => string | null;

let keySource: KeySource = () => null;
let onUnauthorized: (e: ApiError) => void = () => {};

/** Where requests read the key, and what happens when the server refuses it (401). */
export function configureApi(source: KeySource, unauthorized: (e: ApiError) => void): void {
  keySource = source;
  onUnauthorized = unauthorized;
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  query?: Record<string, string | number | boolean | null | undefined>;
  body?: unknown;
  /** `Accept`; JSON unless given. */
  accept?: string;
  /** Use this key instead of the signed-in one (signing in). */
  key?: string;
  /** A 401 is the caller's to handle (signing in), not a sign-out. */
  expectUnauthorized?: boolean;
}

export function buildUrl(path: string, query?: RequestOptions['query']): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    params.set(k, String(v));
  }
  const s = params.toString();
  return s ? `${path}?${s}` : path;
}

async function send(path: string, opts: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = { Accept: opts.accept ?? 'application/json' };
  const key = opts.key ?? keySource();
  if (key) headers['x-api-key'] = key;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let resp: Response;
  try {
    resp = await fetch(buildUrl(path, opts.query), {
      method: opts.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, { error: 'unreachable', message: 'The server cannot be reached. Check that Eddy is running.' });
  }
  if (!resp.ok) {
    let parsed: Partial<ErrorBody> = {};
    try {
      parsed = (await resp.json()) as Partial<ErrorBody>;
    } catch {
      parsed = { message: `the server answered ${resp.status} ${resp.statusText}` };
    }
    const retry = Number(resp.headers.get('retry-after'));
    const err = new ApiError(resp.status, parsed, Number.isFinite(retry) && retry > 0 ? retry : null);
    if (resp.status === 401 && !opts.expectUnauthorized) onUnauthorized(err);
    throw err;
  }
  return resp;
}

/** A JSON call; `undefined` for 204. */
export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const resp = await send(path, opts);
  if (resp.status === 204) return undefined as T;
  return (await resp.json()) as T;
}

/** A call whose answer is a file (CSV …): the body and its content type. */
export async function apiBlob(path: string, opts: RequestOptions): Promise<Blob> {
  const resp = await send(path, opts);
  return resp.blob();
}

/** Saves a blob as a file through a temporary link (no navigation, nothing inline). */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.rel = 'noopener';
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
