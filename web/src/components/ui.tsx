// Building blocks shared by the views: loading / empty / error states, panels, stat tiles, the
// range picker, copy buttons, form fields with their server-side errors, and links.

import type { ComponentChildren } from 'preact';
import { useEffect, useId, useRef, useState } from 'preact/hooks';
import type { ApiError } from '../lib/api';
import { formatChange } from '../lib/format';
import { PRESET_LABELS, type RangeName, type RangeState, toLocalInput } from '../lib/range';
import { onLinkClick } from '../lib/router';

export function Link({
  href,
  children,
  class: cls,
  title,
  ...aria
}: {
  href: string;
  children: ComponentChildren;
  class?: string;
  title?: string;
  'aria-label'?: string;
  'aria-current'?: 'page';
}) {
  return (
    <a href={href} class={cls} title={title} aria-label={aria['aria-label']} aria-current={aria['aria-current']} onClick={(e) => onLinkClick(e as unknown as MouseEvent, href)}>
      {children}
    </a>
  );
}

export function Panel({ title, actions, children, class: cls, id }: { title?: ComponentChildren; actions?: ComponentChildren; children: ComponentChildren; class?: string; id?: string }) {
  const hid = useId();
  return (
    <section class={`panel ${cls ?? ''}`} aria-labelledby={title ? hid : undefined} id={id}>
      {(title || actions) && (
        <header class="panel-head">
          {title && <h2 id={hid}>{title}</h2>}
          {actions && <div class="panel-actions">{actions}</div>}
        </header>
      )}
      {children}
    </section>
  );
}

export function Loading({ label = 'Loading…', rows = 0 }: { label?: string; rows?: number }) {
  return (
    <div class="state loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" />
      <span>{label}</span>
      {rows > 0 && (
        <div class="skeleton" aria-hidden="true">
          {Array.from({ length: rows }, (_, i) => (
            <div key={i} class="skeleton-row" />
          ))}
        </div>
      )}
    </div>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <div class="state empty">{children}</div>;
}

/** An API error in Eddy's words (and its field errors, when they were not shown at fields). */
export function ErrorNote({ error, title, onRetry }: { error: ApiError | Error | null | undefined; title?: string; onRetry?: () => void }) {
  if (!error) return null;
  const api = error as ApiError;
  return (
    <div class="state error" role="alert">
      <p>
        <strong>{title ?? describeStatus(api.status)}</strong> {error.message}
      </p>
      {api.errors && api.errors.length > 0 && (
        <ul>
          {api.errors.map((e, i) => (
            <li key={i}>
              <code>{e.field}</code>: {e.reason}
            </li>
          ))}
        </ul>
      )}
      {onRetry && (
        <button type="button" class="btn small" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

function describeStatus(status: number | undefined): string {
  switch (status) {
    case 0:
      return 'Unreachable.';
    case 400:
      return 'Not accepted.';
    case 403:
      return 'Not allowed.';
    case 404:
      return 'Not found.';
    case 409:
      return 'Conflict.';
    case 413:
      return 'Too large.';
    case 429:
      return 'Slow down.';
    case 503:
      return 'Unavailable.';
    default:
      return 'Error.';
  }
}

/** A figure with its label and its change against the previous period. */
export function Stat({ label, value, change, hint, invert }: { label: string; value: string; change?: number | null; hint?: string; invert?: boolean }) {
  const dir = change == null || change === 0 ? 'flat' : change > 0 ? 'up' : 'down';
  const good = dir === 'flat' ? '' : (dir === 'up') !== !!invert ? 'good' : 'bad';
  return (
    <div class="stat">
      <div class="stat-label">{label}</div>
      <div class="stat-value num">{value}</div>
      {change !== undefined && (
        <div class={`stat-change ${dir} ${good}`} title={hint}>
          <span aria-hidden="true">{dir === 'up' ? '▲' : dir === 'down' ? '▼' : '•'}</span>{' '}
          {change == null ? 'no previous data' : `${formatChange(change)} vs previous`}
        </div>
      )}
    </div>
  );
}

const RANGES: RangeName[] = ['15m', '1h', '24h', '7d', 'custom'];

/** Presets as a radio group, and custom bounds (local time) applied with a button. */
export function RangePicker({ value, onChange, presets = RANGES }: { value: RangeState; onChange: (r: RangeState) => void; presets?: RangeName[] }) {
  const name = useId();
  const [from, setFrom] = useState(value.from || toLocalInput(Date.now() - 86400_000));
  const [to, setTo] = useState(value.to || toLocalInput(Date.now()));
  useEffect(() => {
    if (value.from) setFrom(toLocalInputFromAny(value.from));
    if (value.to) setTo(toLocalInputFromAny(value.to));
  }, [value.from, value.to]);
  return (
    <div class="range-picker">
      <fieldset class="segmented">
        <legend class="sr-only">Time range</legend>
        {presets.map((r) => (
          <label key={r} class={value.range === r ? 'on' : ''}>
            <input
              type="radio"
              name={name}
              value={r}
              checked={value.range === r}
              onChange={() => onChange(r === 'custom' ? { range: 'custom', from: fromLocal(from), to: fromLocal(to) } : { range: r, from: '', to: '' })}
            />
            <span>{r === 'custom' ? 'Custom' : r}</span>
          </label>
        ))}
      </fieldset>
      {value.range === 'custom' && (
        <form
          class="custom-range"
          onSubmit={(e) => {
            e.preventDefault();
            onChange({ range: 'custom', from: fromLocal(from), to: fromLocal(to) });
          }}
        >
          <label>
            From <input type="datetime-local" value={from} onInput={(e) => setFrom(e.currentTarget.value)} required />
          </label>
          <label>
            To <input type="datetime-local" value={to} onInput={(e) => setTo(e.currentTarget.value)} required />
          </label>
          <button class="btn small" type="submit">
            Apply
          </button>
        </form>
      )}
      <span class="sr-only" aria-live="polite">
        {PRESET_LABELS[value.range]}
      </span>
    </div>
  );
}

function toLocalInputFromAny(s: string): string {
  const ms = Date.parse(s);
  return Number.isFinite(ms) ? toLocalInput(ms) : s;
}

function fromLocal(s: string): string {
  const ms = Date.parse(s);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : s;
}

/** Copies `text` to the clipboard; says so for a moment. */
export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [done, setDone] = useState<'idle' | 'copied' | 'failed'>('idle');
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  return (
    <button
      type="button"
      class="btn small"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setDone('copied');
        } catch {
          setDone('failed');
        }
        clearTimeout(timer.current);
        timer.current = setTimeout(() => setDone('idle'), 2000);
      }}
    >
      {done === 'copied' ? 'Copied' : done === 'failed' ? 'Copy failed — select the text' : label}
    </button>
  );
}

/** A labelled form field showing the server's reason for it, if it refused it. */
export function Field({
  label,
  error,
  hint,
  children,
}: {
  label: string;
  error?: string;
  hint?: string;
  children: (ids: { id: string; describedBy?: string; invalid: boolean }) => ComponentChildren;
}) {
  const id = useId();
  const errId = `${id}-err`;
  const hintId = `${id}-hint`;
  const describedBy = [error ? errId : '', hint ? hintId : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div class={`field ${error ? 'invalid' : ''}`}>
      <label for={id}>{label}</label>
      {children({ id, describedBy, invalid: !!error })}
      {hint && (
        <small id={hintId} class="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={errId} class="field-error">
          {error}
        </small>
      )}
    </div>
  );
}

export function Badge({ tone, children }: { tone: string; children: ComponentChildren }) {
  return <span class={`badge ${tone}`}>{children}</span>;
}
