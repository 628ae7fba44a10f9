// SQL over the tenant's tables: an editor (Ctrl+Enter runs), the tables and their columns
// (`GET /api/v1/query/tables`), results with column types, row count and time taken, EXPLAIN,
// and CSV download. Errors are the server's, shown as they come.

import { useEffect, useRef, useState } from 'preact/hooks';
import { Empty, ErrorNote, Loading, Panel } from '../components/ui';
import { api, apiBlob, ApiError, saveBlob } from '../lib/api';
import { formatCount, formatMillis } from '../lib/format';
import { useApi } from '../lib/hooks';
import { useQueryState } from '../lib/router';
import type { SqlAnswer, TableInfo } from '../lib/types';

const DEFAULT_SQL = 'SELECT type, count(*) AS n\nFROM events\nWHERE time > now() - INTERVAL \'1 day\'\nGROUP BY type\nORDER BY n DESC';
const SPEC = { q: DEFAULT_SQL };

/** Rows drawn in the results table (all of them go into the CSV). */
const SHOWN_ROWS = 1000;

type Result = { answer: SqlAnswer; ms: number; explain: boolean; sql: string };

export function Sql() {
  const [state, setState] = useQueryState(SPEC);
  const [sql, setSql] = useState(state.q);
  const [result, setResult] = useState<Result | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState<'run' | 'explain' | 'csv' | null>(null);
  const editor = useRef<HTMLTextAreaElement>(null);
  // The session's tables and their columns, as the server lists them.
  const tables = useApi(() => api<{ data: TableInfo[] }>('/api/v1/query/tables'), []);

  useEffect(() => {
    if (state.q !== sql && busy === null) setSql(state.q);
  }, [state.q]);

  const run = async (explain: boolean) => {
    const text = sql.trim();
    if (!text) return;
    setState({ q: sql });
    const statement = explain && !/^explain\b/i.test(text) ? `EXPLAIN ${text}` : text;
    setBusy(explain ? 'explain' : 'run');
    setError(null);
    const t0 = performance.now();
    try {
      const answer = await api<SqlAnswer>('/api/v1/query', { method: 'POST', body: { sql: statement } });
      setResult({ answer, ms: performance.now() - t0, explain: explain || /^explain\b/i.test(text), sql: statement });
    } catch (e) {
      setError(e as ApiError);
      setResult(null);
    } finally {
      setBusy(null);
    }
  };

  const downloadCsv = async () => {
    const text = sql.trim();
    if (!text) return;
    setBusy('csv');
    setError(null);
    try {
      const blob = await apiBlob('/api/v1/query', { method: 'POST', body: { sql: text, format: 'csv' }, accept: 'text/csv' });
      saveBlob(blob, 'eddy-query.csv');
    } catch (e) {
      setError(e as ApiError);
    } finally {
      setBusy(null);
    }
  };

  const insert = (text: string) => {
    const el = editor.current;
    if (!el) return;
    const start = el.selectionStart ?? sql.length;
    const end = el.selectionEnd ?? sql.length;
    const next = sql.slice(0, start) + text + sql.slice(end);
    setSql(next);
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(start + text.length, start + text.length);
    });
  };

  return (
    <div class="page sql">
      <div class="page-head">
        <h1>SQL</h1>
      </div>
      <div class="sql-layout">
        <aside class="sql-tables" aria-label="Tables">
          <h2>Tables</h2>
          {tables.loading ? (
            <Loading rows={5} />
          ) : tables.error && !tables.data ? (
            <ErrorNote error={tables.error} onRetry={tables.reload} />
          ) : (
            <ul>
              {(tables.data?.data ?? []).map((t) => (
                <TableItem key={t.name} table={t} onInsert={insert} />
              ))}
            </ul>
          )}
        </aside>
        <div class="sql-main">
          <Panel>
            <form
              onSubmit={(e) => {
                e.preventDefault();
                void run(false);
              }}
            >
              <label for="sql-editor" class="label">
                SQL <span class="muted small">(one read-only statement; Ctrl+Enter runs it)</span>
              </label>
              <textarea
                id="sql-editor"
                ref={editor}
                class="sql-editor"
                spellcheck={false}
                rows={8}
                value={sql}
                onInput={(e) => setSql(e.currentTarget.value)}
                onKeyDown={(e) => {
                  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                    e.preventDefault();
                    void run(false);
                  }
                }}
              />
              <div class="row">
                <button type="submit" class="btn primary" disabled={busy !== null}>
                  {busy === 'run' ? 'Running…' : 'Run'}
                </button>
                <button type="button" class="btn" disabled={busy !== null} onClick={() => void run(true)}>
                  {busy === 'explain' ? 'Explaining…' : 'Explain'}
                </button>
                <button type="button" class="btn" disabled={busy !== null} onClick={() => void downloadCsv()}>
                  {busy === 'csv' ? 'Preparing…' : 'Download CSV'}
                </button>
              </div>
            </form>
          </Panel>
          {error && <ErrorNote error={error} title="The query failed." />}
          {result && <Results r={result} />}
        </div>
      </div>
    </div>
  );
}

function TableItem({ table, onInsert }: { table: TableInfo; onInsert: (t: string) => void }) {
  const { name } = table;
  return (
    <li>
      <details>
        <summary>
          <code>{name}</code> <span class="muted small">{table.description}</span>
        </summary>
        <ul class="columns">
          <li>
            <button type="button" class="linkish" onClick={() => onInsert(name)} aria-label={`Insert table name ${name}`}>
              {name}
            </button>
          </li>
          {table.columns.map((c) => (
            <li key={c.name}>
              <button type="button" class="linkish" onClick={() => onInsert(c.name)} aria-label={`Insert column ${c.name}`}>
                {c.name}
              </button>{' '}
              <span class="muted small col-type-inline" title={`${c.type}${c.nullable ? '' : ', not null'}`}>
                {typeLabel(c.type)}
                {c.nullable ? '' : ' · not null'}
              </span>
            </li>
          ))}
        </ul>
      </details>
    </li>
  );
}

/**
 * An Arrow type name, shortened where Arrow spells out a structure: maps as
 * `Map(Utf8 → Float64)`; every other name (`Utf8`, `Timestamp(ns, "UTC")`) as it is.
 */
export function typeLabel(arrow: string): string {
  const map = /^Map\(.*"keys": (?:non-null )?([A-Za-z0-9_]+).*"values": (?:non-null )?([A-Za-z0-9_]+)/.exec(arrow);
  if (map) return `Map(${map[1]} → ${map[2]})`;
  return arrow;
}

export function cellText(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v);
}

function Results({ r }: { r: Result }) {
  const { answer } = r;
  const isPlan = r.explain && answer.columns.some((c) => c.name === 'plan');
  const shown = answer.data.slice(0, SHOWN_ROWS);
  return (
    <Panel
      title={isPlan ? 'Plan' : 'Result'}
      actions={
        <span class="muted small" aria-live="polite" data-testid="sql-meta">
          {formatCount(answer.rows)} {answer.rows === 1 ? 'row' : 'rows'} · {formatMillis(r.ms)}
        </span>
      }
    >
      {isPlan ? (
        <div class="plans">
          {answer.data.map((row, i) => (
            <div key={i}>
              <h3 class="small">{cellText(row.plan_type)}</h3>
              <pre class="code">{cellText(row.plan)}</pre>
            </div>
          ))}
        </div>
      ) : answer.columns.length === 0 ? (
        <Empty>The statement returned no columns.</Empty>
      ) : (
        <div class="table-wrap results">
          <table class="table compact">
            <caption class="sr-only">Query result</caption>
            <thead>
              <tr>
                {answer.columns.map((c) => (
                  <th key={c.name} scope="col">
                    <span class="col-name">{c.name}</span>
                    <span class="col-type" title={c.type}>
                      {typeLabel(c.type)}
                    </span>
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {shown.map((row, i) => (
                <tr key={i}>
                  {answer.columns.map((c) => {
                    const v = row[c.name];
                    return (
                      <td key={c.name} class={v === null || v === undefined ? 'null' : typeof v === 'number' ? 'num right' : ''}>
                        {cellText(v)}
                      </td>
                    );
                  })}
                </tr>
              ))}
            </tbody>
          </table>
          {answer.rows === 0 && <Empty>No rows.</Empty>}
          {answer.rows > SHOWN_ROWS && <p class="muted small">Showing the first {formatCount(SHOWN_ROWS)} rows; the CSV has all {formatCount(answer.rows)}.</p>}
        </div>
      )}
    </Panel>
  );
}
