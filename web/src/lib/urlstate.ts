// A view's state in the query string, so a link reproduces what its sender saw. Each view
// declares its fields with their defaults; the type of the default says how a field is
// written: strings as they are, numbers in decimal, booleans as `1` / `0`, arrays and objects
// as JSON. Defaults are left out of the URL and keys are written in the order of the spec,
// so equal states give equal URLs.

export type FieldValue = string | number | boolean | unknown[] | Record<string, unknown>;
export type Spec = Record<string, FieldValue>;

function decodeField(raw: string, def: FieldValue): FieldValue {
  if (typeof def === 'string') return raw;
  if (typeof def === 'number') {
    const n = Number(raw);
    return raw.trim() !== '' && Number.isFinite(n) ? n : def;
  }
  if (typeof def === 'boolean') {
    if (raw === '1' || raw === 'true') return true;
    if (raw === '0' || raw === 'false') return false;
    return def;
  }
  try {
    const v: unknown = JSON.parse(raw);
    if (Array.isArray(def)) return Array.isArray(v) ? v : def;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : def;
  } catch {
    return def;
  }
}

function encodeField(v: FieldValue): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? '1' : '0';
  return JSON.stringify(v);
}

function same(a: FieldValue, b: FieldValue): boolean {
  return encodeField(a) === encodeField(b);
}

/** Reads `spec`'s fields from a query string; absent or malformed ones take their default. */
export function decodeState<S extends Spec>(search: string, spec: S): S {
  const params = new URLSearchParams(search.startsWith('?') ? search.slice(1) : search);
  const out: Record<string, FieldValue> = {};
  for (const key of Object.keys(spec)) {
    const raw = params.get(key);
    out[key] = raw == null ? spec[key] : decodeField(raw, spec[key]);
  }
  return out as S;
}

/**
 * The query string (with `?`, or `''` when every field has its default) of `state`. Fields
 * not in `spec` are dropped, so a view writes only what it reads.
 */
export function encodeState<S extends Spec>(state: Partial<S>, spec: S): string {
  const params = new URLSearchParams();
  for (const key of Object.keys(spec)) {
    const v = state[key];
    if (v === undefined || same(v as FieldValue, spec[key])) continue;
    params.set(key, encodeField(v as FieldValue));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}
