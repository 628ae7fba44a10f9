// Shapes of Eddy's API answers, as its OpenAPI document (`/api/v1/openapi.json`) and the
// service layer's serde structs define them. Only the fields the dashboard reads are listed.

export type Scope = 'admin' | 'read' | 'write';

export interface Whoami {
  tenant_id: string;
  /** The tenant's name; `null` if it was deleted since the key was checked (older servers: absent). */
  tenant_name?: string | null;
  key_id: string;
  scopes: Scope[];
}

/** One rejected field: `{index, field, reason}` (events) or `{index: 0, field, reason}` (rules). */
export interface FieldError {
  index: number;
  field: string;
  reason: string;
}

/** Every error body: `{"error": code, "message": …, "errors"?: [...]}`. */
export interface ErrorBody {
  error: string;
  message: string;
  errors?: FieldError[];
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface StoredEvent {
  event_id: string;
  time: string;
  received_at: string;
  type: string;
  source?: string;
  device_id?: string;
  user_id?: string;
  page_url?: string;
  metrics: Record<string, number | null>;
  properties: Record<string, unknown>;
}

export interface DeviceSummary {
  device_id: string;
  first_seen: string;
  last_seen: string;
  event_count: number;
  metrics: string[];
}

export interface MetricPoint {
  time: string;
  value: number;
}

export interface DeviceMetrics {
  device_id: string;
  metrics: Record<string, { latest: MetricPoint; points: MetricPoint[] }>;
}

/** `GET /api/v1/metrics/export?format=json`: the newest value of every (device, metric). */
export interface LatestMetric {
  device_id: string;
  metric: string;
  time: string;
  value: number;
}

export type Resolution = '1m' | '1h' | '1d';

export interface MetricRollup {
  time: string;
  device_id: string | null;
  metric: string;
  count: number;
  sum: number;
  min: number;
  max: number;
  avg: number;
  first: number;
  last: number;
  p50: number | null;
  p90: number | null;
  p95: number | null;
  p99: number | null;
  final: boolean;
  complete: boolean;
  corrected?: boolean;
}

export interface RollupsAnswer {
  resolution: Resolution;
  watermark: string | null;
  data: MetricRollup[];
}

export interface ValueCount {
  value: string | number | boolean | null;
  count: number;
  users: number;
}

export interface PeriodSummary {
  events: number;
  events_per_minute: number;
  users: number;
  devices: number;
  errors: number;
  error_rate: number;
  late: number;
  by_type: ValueCount[];
  top_pages: ValueCount[];
  top_sources: ValueCount[];
}

export interface SummaryAnswer {
  from: string;
  to: string;
  previous_from: string;
  current: PeriodSummary;
  previous: PeriodSummary;
  change: {
    events: number | null;
    users: number | null;
    devices: number | null;
    errors: number | null;
    late: number | null;
  };
  ingest_since_start: {
    events_rejected: number;
    events_deduplicated: number;
    requests_rate_limited: number;
  };
}

export interface TopAnswer {
  dimension: string;
  from: string;
  to: string;
  total: number;
  without_value: number;
  distinct: number;
  data: { value: string | number | boolean | null; count: number; users: number; share: number }[];
  other: { count: number; share: number };
}

export type Severity = 'info' | 'warning' | 'critical';
export type AlertStatus = 'open' | 'acknowledged' | 'resolved';

export interface Alert {
  id: string;
  rule_id: string;
  rule_name: string;
  rule_kind: string;
  device_id: string;
  metric: string;
  severity: Severity;
  status: AlertStatus;
  message: string;
  value: number | null;
  expected: number | null;
  score: number | null;
  occurrences: number;
  opened_at: string;
  last_triggered_at: string;
  acknowledged_at: string | null;
  resolved_at: string | null;
  resolution: string | null;
  note: string | null;
}

export interface AlertList {
  data: Alert[];
  total: number;
  suppressed: number;
}

export type RuleKindName = 'zscore' | 'ewma' | 'threshold' | 'deadman';

export interface Rule {
  id: string;
  name: string;
  kind: RuleKindName;
  window?: number;
  threshold?: number;
  min_points?: number;
  alpha?: number;
  op?: '>' | '<' | 'outside';
  value?: number;
  min?: number;
  max?: number;
  minutes?: number;
  devices: string[];
  metrics: string[];
  severity: Severity;
  resolve_after: number;
  enabled: boolean;
  created_at: string;
  updated_at: string;
}

export interface Lag {
  end_offset: number;
  consumers: { name: string; next_offset: number; lag: number }[];
  store: { applied_offset: number; persisted_offset: number; lag: number };
  stream: { applied_offset: number; lag: number };
}

/** `GET /api/v1/overview`: the summary, the newest open alerts and the pipeline's health. */
export interface OverviewAnswer {
  /** As `GET /api/v1/analytics/summary` answers it (`top` sizes its lists). */
  summary: SummaryAnswer;
  open_alerts: { data: Alert[]; total: number };
  pipeline: {
    ready: boolean;
    log: 'ok' | 'failed' | 'closed' | string;
    reason: string | null;
    /** As `GET /lag` answers it. */
    lag: Lag;
  };
}

export interface FunnelStepAnswer {
  step: number;
  type: string;
  where?: Record<string, unknown>;
  users: number;
  converted: number | null;
  dropped: number | null;
  conversion_from_previous: number | null;
  conversion_from_first: number | null;
  median_seconds_to_convert: number | null;
}

export interface FunnelAnswer {
  from: string;
  to: string;
  window_seconds: number;
  steps: FunnelStepAnswer[];
  breakdown?: {
    field: string;
    groups: { value: string | number | boolean | null; steps: FunnelStepAnswer[] }[];
    omitted_groups: number;
  };
}

export interface RetentionAnswer {
  from: string;
  to: string;
  period: 'day' | 'week';
  cohort: { type: string; where: Record<string, unknown> };
  return: { type: string; where: Record<string, unknown> };
  cohorts: { start: string; users: number; retention: { period: number; share: number; users: number }[] }[];
  average: { period: number; share: number; cohorts: number }[];
}

export interface UserAnswer {
  user_id: string;
  from: string;
  to: string;
  first_seen: string;
  last_seen: string;
  events: number;
  by_type: ValueCount[];
  pages: ValueCount[];
  devices: ValueCount[];
  session_gap_seconds: number;
  session_count: number;
  sessions: { start: string; end: string; duration_seconds: number; events: number }[];
  listed_sessions_seconds: number;
  recent_events: StoredEvent[];
}

export interface SqlColumn {
  name: string;
  type: string;
}

/** `GET /api/v1/query/tables`: a table statements can read, with its columns. */
export interface TableInfo {
  name: string;
  description: string;
  /** Arrow type names (`Utf8`, `Timestamp(ns, "UTC")`, `Map(…)`). */
  columns: { name: string; type: string; nullable: boolean }[];
}

export interface SqlAnswer {
  columns: SqlColumn[];
  rows: number;
  data: Record<string, unknown>[];
}

export interface Tenant {
  id: string;
  name: string;
  created_at: string;
  events_per_sec?: number;
  retention?: string;
  retention_secs?: number;
  webhook_url?: string;
}

export interface KeyView {
  id: string;
  name: string;
  prefix: string;
  scopes: Scope[];
  tenant_id: string;
  created_at: string;
}

export interface CreatedKey extends KeyView {
  key: string;
}

/** A live rollup: the current 1-minute window of one series. */
export interface LiveRollup {
  device_id: string;
  metric: string;
  resolution: Resolution;
  window_start: string;
  count: number;
  sum: number;
  min: number;
  max: number;
  avg: number;
  first: number;
  last: number;
}

export interface LiveAlert extends Alert {
  event: 'opened' | 'acknowledged' | 'resolved';
}

export type LiveMessage =
  | { type: 'event'; timestamp: string; data: StoredEvent }
  | { type: 'rollup'; timestamp: string; data: LiveRollup }
  | { type: 'alert'; timestamp: string; data: LiveAlert };
