// Formatting of numbers, durations and times for the dashboard. Pure functions (the unit tests
// pin them): one locale for digits (`en-US` grouping) so figures line up whatever the browser.

const DASH = '—';

const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A whole count with thousands separators: `1234567` → `1,234,567`. */
export function formatCount(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return DASH;
  return grouped.format(Math.round(n));
}

/** A count in at most four characters of digits: `999`, `1.2k`, `45k`, `1.2M`, `3.4B`. */
export function formatCompact(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return DASH;
  const abs = Math.abs(n);
  const sign = n < 0 ? '-' : '';
  const units: [number, string][] = [
    [1, ''],
    [1e3, 'k'],
    [1e6, 'M'],
    [1e9, 'B'],
    [1e12, 'T'],
  ];
  let i = units.length - 1;
  while (i > 0 && abs < units[i][0]) i--;
  const text = (k: number) => {
    const v = abs / units[k][0];
    // One decimal below 10 (9.95 would print as 10.0), none above.
    return k > 0 && v < 9.95 ? trimZeros(v.toFixed(1)) : String(Math.round(v));
  };
  // 999.6k rounds to 1000k: say 1M instead.
  if (text(i) === '1000' && i < units.length - 1) i++;
  return sign + text(i) + units[i][1];
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/**
 * A measured value (a metric reading, an average): enough digits to tell readings apart and
 * no more. `23.456` → `23.46`, `1013.25` → `1,013.3`, `0.001234` → `0.00123`, `-4` → `-4`.
 */
export function formatValue(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return DASH;
  if (v === 0) return '0';
  const abs = Math.abs(v);
  if (abs >= 1e15 || abs < 1e-6) return v.toExponential(2);
  let digits: number;
  if (abs >= 1000) digits = 1;
  else if (abs >= 1) digits = 2;
  else digits = Math.min(8, 2 - Math.floor(Math.log10(abs)));
  return new Intl.NumberFormat('en-US', { maximumFractionDigits: digits }).format(v);
}

/** A share in [0, 1] as a percentage: `0.1234` → `12.3%`; `1` → `100%`. */
export function formatPercent(share: number | null | undefined, digits = 1): string {
  if (share == null || !Number.isFinite(share)) return DASH;
  const p = share * 100;
  if (p === 100 || p === 0) return `${p}%`;
  return `${p.toFixed(digits)}%`;
}

/**
 * A relative change against the previous period: `0.25` → `+25%`, `-0.031` → `-3.1%`; `null`
 * (nothing to compare with) → `—`.
 */
export function formatChange(change: number | null | undefined): string {
  if (change == null || !Number.isFinite(change)) return DASH;
  const p = change * 100;
  const abs = Math.abs(p);
  const text = abs >= 10 ? String(Math.round(abs)) : trimZeros(abs.toFixed(1));
  if (text === '0') return '0%';
  return `${p > 0 ? '+' : '-'}${text}%`;
}

/**
 * A duration in seconds, in its two largest units: `0.25` → `250 ms`, `45` → `45 s`,
 * `90` → `1 min 30 s`, `5400` → `1 h 30 min`, `216000` → `2 d 12 h`.
 */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds)) return DASH;
  const neg = seconds < 0;
  let s = Math.abs(seconds);
  let out: string;
  if (s < 1) {
    const ms = s * 1000;
    out = ms < 10 && ms > 0 ? `${trimZeros(ms.toFixed(1))} ms` : `${Math.round(ms)} ms`;
  } else if (s < 60) {
    out = s < 10 ? `${trimZeros(s.toFixed(1))} s` : `${Math.round(s)} s`;
  } else {
    s = Math.round(s);
    const units: [number, string][] = [
      [86400, 'd'],
      [3600, 'h'],
      [60, 'min'],
      [1, 's'],
    ];
    const i = units.findIndex(([size]) => s >= size);
    const [size, unit] = units[i];
    const n = Math.floor(s / size);
    out = `${n} ${unit}`;
    const next = units[i + 1];
    if (next) {
      const m = Math.floor((s - n * size) / next[0]);
      if (m > 0) out += ` ${m} ${next[1]}`;
    }
  }
  return neg ? `-${out}` : out;
}

/** Milliseconds, for timings: `3.2` → `3.2 ms`, `1530` → `1.53 s`. */
export function formatMillis(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return DASH;
  if (ms < 1) return `${trimZeros(ms.toFixed(2))} ms`;
  if (ms < 100) return `${trimZeros(ms.toFixed(1))} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${trimZeros((ms / 1000).toFixed(2))} s`;
}

/** Parses an RFC 3339 string (or takes epoch milliseconds). `NaN` when it is not a time. */
export function toMillis(t: string | number | Date): number {
  if (typeof t === 'number') return t;
  if (t instanceof Date) return t.getTime();
  return Date.parse(t);
}

/**
 * How long ago `t` was, from `now` (both as RFC 3339 or epoch ms): `just now`, `12 s ago`,
 * `5 min ago`, `3 h ago`, `2 d ago`; a future time reads `in 5 min`.
 */
export function formatRelative(t: string | number | Date, now: number = Date.now()): string {
  const ms = toMillis(t);
  if (!Number.isFinite(ms)) return DASH;
  const diff = (now - ms) / 1000;
  const abs = Math.abs(diff);
  if (abs < 5) return 'just now';
  let text: string;
  if (abs < 60) text = `${Math.floor(abs)} s`;
  else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.floor(abs / 3600)} h`;
  else if (abs < 86400 * 365) text = `${Math.floor(abs / 86400)} d`;
  else text = `${Math.floor(abs / (86400 * 365))} y`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** A local date and time to the second: `2026-11-24 14:03:21`. */
export function formatDateTime(t: string | number | Date): string {
  const ms = toMillis(t);
  if (!Number.isFinite(ms)) return DASH;
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A local time of day with milliseconds: `14:03:21.042` (live tails). */
export function formatClock(t: string | number | Date): string {
  const ms = toMillis(t);
  if (!Number.isFinite(ms)) return DASH;
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A local calendar day: `2026-11-24`. */
export function formatDay(t: string | number | Date): string {
  const ms = toMillis(t);
  if (!Number.isFinite(ms)) return DASH;
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** A UTC calendar day (cohorts are UTC days and weeks): `2026-11-24`. */
export function formatUtcDay(t: string | number | Date): string {
  const ms = toMillis(t);
  if (!Number.isFinite(ms)) return DASH;
  return new Date(ms).toISOString().slice(0, 10);
}

/** A byte count: `512 B`, `1.5 KiB`, `12 MiB`. */
export function formatBytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 ? String(Math.round(v)) : v < 10 ? trimZeros(v.toFixed(1)) : String(Math.round(v));
  return `${text} ${units[i]}`;
}

/** A rate per second: `0.5/s`, `12/s`, `1.2k/s`. */
export function formatRate(perSecond: number | null | undefined): string {
  if (perSecond == null || !Number.isFinite(perSecond)) return DASH;
  if (perSecond > 0 && perSecond < 10) return `${trimZeros(perSecond.toFixed(1))}/s`;
  return `${formatCompact(perSecond)}/s`;
}

/** Masks a secret for display: the first 9 characters, then dots: `eddy_AbCd•••••`. */
export function maskSecret(secret: string): string {
  if (secret.length <= 12) return '•'.repeat(Math.max(4, secret.length));
  return `${secret.slice(0, 9)}${'•'.repeat(8)}`;
}
