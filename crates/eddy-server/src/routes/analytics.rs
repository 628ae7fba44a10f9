//! The analytics routes (`read` scope, the caller's tenant only): summary, top-N, grouped time
//! series, one user's activity, funnels, retention, and exports of raw events and of the
//! latest device metrics.
//!
//! Every parameter is validated (unknown ones are an error, so a typo never widens a
//! question); `from`/`to` take RFC 3339, epoch numbers, `now` or relative times like `-24h`
//! and default to the last 24 hours. The computations live in `eddy_store::analytics`; this
//! module parses, shapes answers and streams exports.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use eddy_store::analytics::{
    Agg, Condition, Count, EventMatch, Field, FunnelQuery, FunnelSteps, GroupedQuery, Measure,
    RetentionQuery, Summary, SummaryQuery, TopQuery, UserQuery,
};
use eddy_store::journeys::Period;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::openapi::{ErrorBody, Errors, FilterParams, RangeParams};
use crate::routes::parse_json;
use crate::routes::query::{events_csv, parse_time_param, unknown, whole};
use crate::state::AppState;
use crate::{Error, Result};
use eddy_service::Error as Domain;
use eddy_service::auth::Scope;

const DAY_NS: i64 = 86_400_000_000_000;

fn bad(message: impl Into<String>) -> Error {
    Domain::invalid("invalid_parameter", message).into()
}

fn rfc(ns: i64) -> String {
    eddy_model::time::format_rfc3339(ns)
}

/// `from`/`to` of a request, defaulting to the last 24 hours; `from` must be before `to`.
struct Range {
    from: Option<i64>,
    to: Option<i64>,
    now: i64,
}

impl Range {
    fn new(state: &AppState) -> Self {
        Self {
            from: None,
            to: None,
            now: state.clock.now_ns(),
        }
    }

    /// Takes `k=v` when it is a range parameter (`from`/`to`, with `aliases`).
    fn take(&mut self, k: &str, v: &str) -> Result<bool> {
        match k {
            "from" | "start" | "start_time" => self.from = Some(parse_time_param(k, v, self.now)?),
            "to" | "end" | "end_time" => self.to = Some(parse_time_param(k, v, self.now)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn resolve(&self) -> Result<(i64, i64)> {
        let to = self.to.unwrap_or(self.now);
        let from = self.from.unwrap_or(to.saturating_sub(DAY_NS));
        if from >= to {
            return Err(bad("`from` must be before `to`"));
        }
        Ok((from, to))
    }
}

/// A filter parameter (`type`, `source`, `device_id`, `user_id`, `page_url`, `property.KEY`)
/// as a condition, `None` when `k` is not one.
fn filter_param(k: &str, v: &str) -> Option<Condition> {
    let field = match k {
        "type" | "event_type" => Field::Type,
        "source" => Field::Source,
        "device_id" | "sensor_id" => Field::DeviceId,
        "user_id" => Field::UserId,
        "page_url" => Field::PageUrl,
        other => Field::Property(
            other
                .strip_prefix("property.")
                .or_else(|| other.strip_prefix("properties."))
                .filter(|k| !k.is_empty())?
                .to_string(),
        ),
    };
    Some(Condition {
        field,
        value: Value::String(v.to_string()),
    })
}

const FILTERS: &str = "type, source, device_id, user_id, page_url, property.KEY";

/// Reads a filtered route's parameters: the range, the route's own (`own` takes `k=v` and says
/// whether it was one of them; `known` names them for the error), and the filters.
fn read_filtered(
    pairs: &[(String, String)],
    range: &mut Range,
    known: &str,
    mut own: impl FnMut(&str, &str) -> Result<bool>,
) -> Result<Vec<Condition>> {
    let mut filter = Vec::new();
    for (k, v) in pairs {
        if range.take(k, v)? || own(k, v)? {
            continue;
        }
        match filter_param(k, v) {
            Some(c) => filter.push(c),
            None => return Err(unknown(k, &format!("{known}, from, to, {FILTERS}"))),
        }
    }
    Ok(filter)
}

/// The field a route groups by, which it cannot do without.
fn required_field(field: Option<Field>, name: &str) -> Result<Field> {
    field.ok_or_else(|| {
        bad(format!(
            "`{name}` is required: type, page_url, source, device_id, user_id or property:KEY"
        ))
    })
}

fn field_param(name: &str, v: &str) -> Result<Field> {
    Field::parse(v).map_err(|e| bad(format!("`{name}`: {e}")))
}

fn counts_json(rows: &[Count]) -> Vec<Value> {
    rows.iter()
        .map(|c| json!({"value": c.value, "count": c.count, "users": c.users}))
        .collect()
}

/// Relative change from `before` to `now` (`null` when there was nothing before).
fn change(now: u64, before: u64) -> Value {
    if before == 0 {
        Value::Null
    } else {
        json!((now as f64 - before as f64) / before as f64)
    }
}

fn summary_json(s: &Summary, from: i64, to: i64) -> Value {
    let minutes = (to - from) as f64 / 60e9;
    json!({
        "events": s.events,
        "events_per_minute": s.events as f64 / minutes,
        "users": s.users,
        "devices": s.devices,
        "errors": s.errors,
        "error_rate": if s.events == 0 { 0.0 } else { s.errors as f64 / s.events as f64 },
        "late": s.late,
        "by_type": counts_json(&s.by_type),
        "top_pages": counts_json(&s.top_pages),
        "top_sources": counts_json(&s.top_sources),
    })
}

/// The current and the previous period's summaries.
async fn summaries(
    state: &AppState,
    tenant: &str,
    pairs: &[(String, String)],
) -> Result<(i64, i64, Summary, Summary)> {
    let mut range = Range::new(state);
    let mut top = 10;
    for (k, v) in pairs {
        if range.take(k, v)? {
            continue;
        }
        match k.as_str() {
            "top" | "limit" => top = whole(k, v, 1000)?,
            other => return Err(unknown(other, "from, to, top")),
        }
    }
    let (from, to) = range.resolve()?;
    let late_after_ns = state.stream.config().lateness_ns();
    let q = |from, to| SummaryQuery {
        from,
        to,
        top,
        late_after_ns,
    };
    let current = state.query.summary(tenant, q(from, to)).await?;
    let before = from.saturating_sub(to - from);
    let previous = state.query.summary(tenant, q(before, from)).await?;
    Ok((from, to, current, previous))
}

/// `GET /api/v1/analytics/summary`: totals, rates and top lists of the range, the same for the
/// period of equal length before it, and the relative change.
#[utoipa::path(get, path = "/api/v1/analytics/summary", tag = "analytics", operation_id = "summary", summary = "Totals, rates and top lists, with the previous period", params(RangeParams, ("top" = Option<usize>, Query, description = "Length of the top lists (default 10)")), responses((status = 200, description = "`{current, previous, change, ingest_since_start}`", body = Object), Errors))]
pub(crate) async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let (from, to, cur, prev) = summaries(&state, &p.tenant_id, &pairs).await?;
    let counters = state.services.ops.counters(p)?;
    Ok(Json(json!({
        "from": rfc(from),
        "to": rfc(to),
        "previous_from": rfc(from - (to - from)),
        "current": summary_json(&cur, from, to),
        "previous": summary_json(&prev, from - (to - from), from),
        "change": {
            "events": change(cur.events, prev.events),
            "users": change(cur.users, prev.users),
            "devices": change(cur.devices, prev.devices),
            "errors": change(cur.errors, prev.errors),
            "late": change(cur.late, prev.late),
        },
        "ingest_since_start": {
            "events_rejected": counters.events_rejected,
            "events_deduplicated": counters.events_deduplicated,
            "requests_rate_limited": counters.requests_rate_limited,
        },
    }))
    .into_response())
}

/// `GET /analytics/summary` and `GET /v1/analytics/summary`: the same figures in the flat shape
/// product-analytics clients read.
#[utoipa::path(get, path = "/analytics/summary", tag = "analytics", operation_id = "summary_compat", summary = "Summary in the flat shape product-event clients read", params(RangeParams, ("top" = Option<usize>, Query, description = "Length of the top lists (default 10)")), responses((status = 200, description = "`{total_events, unique_users, event_types, ...}`", body = Object), Errors))]
pub(crate) async fn summary_compat(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let (from, to, cur, prev) = summaries(&state, &p.tenant_id, &pairs).await?;
    let by_type: Map<String, Value> = cur
        .by_type
        .iter()
        .map(|c| (c.value.as_str().unwrap_or("").to_string(), json!(c.count)))
        .collect();
    Ok(Json(json!({
        "total_events": cur.events,
        "unique_users": cur.users,
        "unique_devices": cur.devices,
        "event_types": by_type,
        "top_pages": cur.top_pages.iter().map(|c| json!({"page": c.value, "count": c.count})).collect::<Vec<_>>(),
        "top_sources": cur.top_sources.iter().map(|c| json!({"source": c.value, "count": c.count})).collect::<Vec<_>>(),
        "error_events": cur.errors,
        "previous_total_events": prev.events,
        "start_time": rfc(from),
        "end_time": rfc(to),
    }))
    .into_response())
}

/// `GET /v1/analytics/summary`: [`summary_compat`] at the gateway-style path.
#[utoipa::path(get, path = "/v1/analytics/summary", tag = "analytics", operation_id = "summary_compat_v1", summary = "Summary in the flat shape product-event clients read", params(RangeParams, ("top" = Option<usize>, Query, description = "Length of the top lists (default 10)")), responses((status = 200, description = "`{total_events, unique_users, event_types, ...}`", body = Object), Errors))]
pub(crate) async fn summary_compat_v1(
    state: State<AppState>,
    caller: Caller,
    pairs: Query<Vec<(String, String)>>,
) -> Result<Response> {
    summary_compat(state, caller, pairs).await
}

/// `GET /api/v1/analytics/top?dimension=&limit=`: the most frequent values with counts,
/// distinct users and share of the events that have the field.
#[utoipa::path(get, path = "/api/v1/analytics/top", tag = "analytics", operation_id = "top", summary = "Top values of a field with counts, users and share", params(("dimension" = String, Query, description = "page_url, type, source, device_id, user_id or property:KEY"), ("limit" = Option<usize>, Query, description = "How many (default 10)"), RangeParams, FilterParams), responses((status = 200, description = "`{data: [{value, count, users, share}], other, total, ...}`", body = Object), Errors))]
pub(crate) async fn top(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let mut range = Range::new(&state);
    let (mut field, mut limit) = (None, 10);
    let filter = read_filtered(&pairs, &mut range, "dimension, limit", |k, v| {
        match k {
            "dimension" | "by" => field = Some(field_param(k, v)?),
            "limit" => limit = whole(k, v, 1000)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let field = required_field(field, "dimension")?;
    let (from, to) = range.resolve()?;
    let t = state
        .query
        .top(
            &p.tenant_id,
            TopQuery {
                from,
                to,
                field: field.clone(),
                limit,
                filter,
            },
        )
        .await?;
    let share = |n: u64| {
        if t.with_value == 0 {
            0.0
        } else {
            n as f64 / t.with_value as f64
        }
    };
    let listed: u64 = t.rows.iter().map(|c| c.count).sum();
    Ok(Json(json!({
        "dimension": field.name(),
        "from": rfc(from),
        "to": rfc(to),
        "total": t.with_value,
        "without_value": t.without_value,
        "distinct": t.distinct,
        "data": t.rows.iter().map(|c| json!({
            "value": c.value, "count": c.count, "users": c.users, "share": share(c.count),
        })).collect::<Vec<_>>(),
        "other": {"count": t.with_value - listed, "share": share(t.with_value - listed)},
    }))
    .into_response())
}

/// `GET /analytics/events`: click counts per (user, page) in the shape click-tracking clients
/// read — `{"data": [{"user_id", "page_url", "clicks"}], "total_clicks"}` — filtered by
/// `user_id` / `page_url`, over `from`/`to` (default: the last 24 hours).
#[utoipa::path(get, path = "/analytics/events", tag = "analytics", operation_id = "click_counts", summary = "Click counts per (user, page)", params(("user_id" = Option<String>, Query, description = "One user"), ("page_url" = Option<String>, Query, description = "One page"), ("event_type" = Option<String>, Query, description = "Event type counted (default click)"), ("limit" = Option<usize>, Query, description = "Users and pages listed (default 100)"), RangeParams), responses((status = 200, description = "`{data: [{user_id, page_url, clicks}], total_clicks}`", body = Object), Errors))]
pub(crate) async fn click_counts(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let mut range = Range::new(&state);
    let mut filter = vec![Condition {
        field: Field::Type,
        value: json!("click"),
    }];
    let mut limit = 100;
    for (k, v) in &pairs {
        if range.take(k, v)? {
            continue;
        }
        match k.as_str() {
            "user_id" | "page_url" => filter.extend(filter_param(k, v)),
            "event_type" | "type" => filter[0].value = json!(v),
            "limit" => limit = whole(k, v, 1000)?,
            other => {
                return Err(unknown(
                    other,
                    "user_id, page_url, event_type, limit, from, to",
                ));
            }
        }
    }
    let (from, to) = range.resolve()?;
    // Clicks per user, then per page for each listed user: two top-N questions.
    let users = state
        .query
        .top(
            &p.tenant_id,
            TopQuery {
                from,
                to,
                field: Field::UserId,
                limit,
                filter: filter.clone(),
            },
        )
        .await?;
    let mut data = Vec::new();
    for u in &users.rows {
        let mut f = filter.clone();
        f.push(Condition {
            field: Field::UserId,
            value: u.value.clone(),
        });
        let pages = state
            .query
            .top(
                &p.tenant_id,
                TopQuery {
                    from,
                    to,
                    field: Field::PageUrl,
                    limit,
                    filter: f,
                },
            )
            .await?;
        for pg in pages.rows {
            data.push(json!({"user_id": u.value, "page_url": pg.value, "clicks": pg.count}));
        }
    }
    Ok(Json(json!({
        "event_type": filter[0].value,
        "total_clicks": users.with_value + users.without_value,
        "data": data,
        "start_time": rfc(from),
        "end_time": rfc(to),
    }))
    .into_response())
}

fn bucket_param(v: &str) -> Result<u64> {
    let d = humantime::parse_duration(v)
        .map_err(|_| bad(format!("`bucket` `{v}`: a duration such as 1m, 1h or 1d")))?;
    if d.as_secs() == 0 || d.subsec_nanos() != 0 {
        return Err(bad(
            "`bucket` must be a whole number of seconds, at least 1s",
        ));
    }
    Ok(d.as_secs())
}

/// `GET /api/v1/analytics/timeseries?measure=&group_by=&bucket=&limit=`: per bucket, the
/// measure (`count`, `distinct_users` or `metric:NAME` with `agg`) for each of the `limit`
/// (default 5) largest groups over the range, and for all others together (`"other": true`).
#[utoipa::path(get, path = "/api/v1/analytics/timeseries", tag = "analytics", operation_id = "grouped_timeseries", summary = "A measure per bucket for the top groups and \"other\"", params(("measure" = Option<String>, Query, description = "count (default), distinct_users or metric:NAME"), ("agg" = Option<String>, Query, description = "With metric: avg (default), sum, min, max, count"), ("group_by" = String, Query, description = "type, page_url, source, device_id, user_id or property:KEY"), ("bucket" = Option<String>, Query, description = "Bucket width (default 1h)"), ("limit" = Option<usize>, Query, description = "Groups shown (default 5)"), RangeParams, FilterParams), responses((status = 200, description = "`{series: [{group, other, total, data: [{time, value}]}]}`", body = Object), Errors))]
pub(crate) async fn grouped_timeseries(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let mut range = Range::new(&state);
    let (mut measure, mut agg, mut field) = (None, None, None);
    let (mut bucket_secs, mut limit) = (3600, 5);
    let filter = read_filtered(
        &pairs,
        &mut range,
        "measure, agg, group_by, bucket, limit",
        |k, v| {
            match k {
                "measure" => measure = Some(v.to_string()),
                "agg" => {
                    agg = Some(Agg::parse(v).ok_or_else(|| {
                        bad(format!("`agg` `{v}`: use avg, sum, min, max or count"))
                    })?)
                }
                "group_by" => field = Some(field_param(k, v)?),
                "bucket" => bucket_secs = bucket_param(v)?,
                "limit" => limit = whole(k, v, 100)?,
                _ => return Ok(false),
            }
            Ok(true)
        },
    )?;
    let measure = match measure.as_deref().unwrap_or("count") {
        "count" => Measure::Count,
        "distinct_users" => Measure::DistinctUsers,
        m => match m.strip_prefix("metric:").filter(|n| !n.is_empty()) {
            Some(name) => Measure::Metric {
                name: name.to_string(),
                agg: agg.unwrap_or(Agg::Avg),
            },
            None => {
                return Err(bad(format!(
                    "`measure` `{m}`: use count, distinct_users or metric:NAME"
                )));
            }
        },
    };
    if agg.is_some() && !matches!(measure, Measure::Metric { .. }) {
        return Err(bad("`agg` goes with `measure=metric:NAME`"));
    }
    let field = required_field(field, "group_by")?;
    let (from, to) = range.resolve()?;
    let groups = state
        .query
        .grouped(
            &p.tenant_id,
            GroupedQuery {
                from,
                to,
                bucket_secs,
                field: field.clone(),
                measure: measure.clone(),
                limit,
                filter,
            },
        )
        .await?;
    let measure_name = match &measure {
        Measure::Count => "count".to_string(),
        Measure::DistinctUsers => "distinct_users".to_string(),
        Measure::Metric { name, .. } => format!("metric:{name}"),
    };
    Ok(Json(json!({
        "measure": measure_name,
        "group_by": field.name(),
        "bucket_seconds": bucket_secs,
        "from": rfc(from),
        "to": rfc(to),
        "series": groups.iter().map(|g| json!({
            "group": g.value,
            "other": g.value.is_none(),
            "total": g.total,
            "data": g.points.iter().map(|(t, v)| json!({"time": rfc(*t), "value": v})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /api/v1/analytics/users/{user_id}`: first/last seen, events by type, pages, devices,
/// sessions (split after `session_gap`, default 30m, of inactivity; newest first) and the most
/// recent events. The range defaults to the last 30 days. 404 when the user has no events in
/// it.
#[utoipa::path(get, path = "/api/v1/analytics/users/{user_id}", tag = "analytics", operation_id = "user", summary = "One user's activity and sessions", params(("user_id" = String, Path, description = "User id"), ("session_gap" = Option<String>, Query, description = "Inactivity that starts a new session (default 30m)"), ("sessions" = Option<usize>, Query, description = "Sessions listed (default 50)"), ("recent" = Option<usize>, Query, description = "Recent events listed (default 20)"), ("top" = Option<usize>, Query, description = "Pages and devices listed (default 20)"), RangeParams), responses((status = 200, description = "First/last seen, counts, sessions, recent events", body = Object), (status = 404, description = "No events of this user in the range", body = ErrorBody), Errors))]
pub(crate) async fn user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let mut range = Range::new(&state);
    let mut q = UserQuery {
        user_id: user_id.clone(),
        from: 0,
        to: 0,
        session_gap_ns: 30 * 60 * 1_000_000_000,
        sessions: 50,
        recent: 20,
        top: 20,
    };
    for (k, v) in &pairs {
        if range.take(k, v)? {
            continue;
        }
        match k.as_str() {
            "session_gap" => {
                let d = humantime::parse_duration(v)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| bad(format!("`session_gap` `{v}`: a duration such as 30m")))?;
                q.session_gap_ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            }
            "sessions" => q.sessions = whole(k, v, 1000)?,
            "recent" => q.recent = whole(k, v, 1000)?,
            "top" => q.top = whole(k, v, 1000)?,
            other => {
                return Err(unknown(
                    other,
                    "from, to, session_gap, sessions, recent, top",
                ));
            }
        }
    }
    if range.from.is_none() {
        range.from = Some(range.to.unwrap_or(range.now).saturating_sub(30 * DAY_NS));
    }
    (q.from, q.to) = range.resolve()?;
    let Some(u) = state.query.user(&p.tenant_id, q.clone()).await? else {
        return Err(Domain::NotFound(format!(
            "user `{user_id}` has no events between {} and {}",
            rfc(q.from),
            rfc(q.to)
        ))
        .into());
    };
    let total_ns: i64 = u.sessions.iter().map(|s| s.end - s.start).sum();
    Ok(Json(json!({
        "user_id": user_id,
        "from": rfc(q.from),
        "to": rfc(q.to),
        "first_seen": rfc(u.first_seen),
        "last_seen": rfc(u.last_seen),
        "events": u.events,
        "by_type": counts_json(&u.by_type),
        "pages": counts_json(&u.pages),
        "devices": counts_json(&u.devices),
        "session_gap_seconds": q.session_gap_ns / 1_000_000_000,
        "session_count": u.session_count,
        "sessions": u.sessions.iter().map(|s| json!({
            "start": rfc(s.start),
            "end": rfc(s.end),
            "duration_seconds": (s.end - s.start) as f64 / 1e9,
            "events": s.events,
        })).collect::<Vec<_>>(),
        "listed_sessions_seconds": total_ns as f64 / 1e9,
        "recent_events": u.recent,
    }))
    .into_response())
}

/// A time in a JSON body: a string as in query parameters, or an epoch number.
fn body_time(name: &str, v: &Option<Value>, now: i64) -> Result<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time_param(name, s, now).map(Some),
        Some(Value::Number(n)) => parse_time_param(name, &n.to_string(), now).map(Some),
        Some(_) => Err(bad(format!("`{name}`: a time string or an epoch number"))),
    }
}

fn duration(name: &str, v: &Value) -> Result<i64> {
    let d = match v {
        Value::String(s) => humantime::parse_duration(s).ok(),
        Value::Number(n) => n.as_u64().map(std::time::Duration::from_secs),
        _ => None,
    }
    .filter(|d| !d.is_zero())
    .ok_or_else(|| bad(format!("`{name}`: a duration such as \"1h\" or seconds")))?;
    Ok(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// An event of a funnel step or a cohort: `{"type": …, "where": {field: value}}`, or just the
/// type as a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum EventSpec {
    Type(String),
    Full {
        r#type: String,
        #[serde(default, rename = "where")]
        conditions: Map<String, Value>,
    },
}

impl EventSpec {
    fn parse(&self, name: &str) -> Result<EventMatch> {
        let (ty, conds) = match self {
            EventSpec::Type(t) => (t, None),
            EventSpec::Full { r#type, conditions } => (r#type, Some(conditions)),
        };
        if ty.is_empty() {
            return Err(bad(format!("{name}: `type` is empty")));
        }
        let mut conditions = Vec::new();
        for (k, v) in conds.into_iter().flatten() {
            let field = match Field::parse(k) {
                Ok(Field::Type) => {
                    return Err(bad(format!(
                        "{name}: give the type as `type`, not in `where`"
                    )));
                }
                Ok(f) => f,
                // Any other key names a property.
                Err(_) => Field::Property(k.clone()),
            };
            if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return Err(bad(format!(
                    "{name}: `where.{k}` must be a string, number or boolean"
                )));
            }
            conditions.push(Condition {
                field,
                value: v.clone(),
            });
        }
        Ok(EventMatch {
            r#type: ty.clone(),
            conditions,
        })
    }

    fn to_json(&self) -> Value {
        match self {
            EventSpec::Type(t) => json!({"type": t, "where": {}}),
            EventSpec::Full { r#type, conditions } => json!({"type": r#type, "where": conditions}),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunnelRequest {
    steps: Vec<EventSpec>,
    #[serde(default)]
    window: Option<Value>,
    #[serde(default)]
    from: Option<Value>,
    #[serde(default)]
    to: Option<Value>,
    #[serde(default)]
    breakdown: Option<String>,
    #[serde(default)]
    breakdown_limit: Option<usize>,
}

const MAX_STEPS: usize = 16;

fn ratio(a: u64, b: u64) -> Value {
    if b == 0 {
        Value::Null
    } else {
        json!(a as f64 / b as f64)
    }
}

fn steps_json(specs: &[EventSpec], s: &FunnelSteps) -> Vec<Value> {
    specs
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            let users = s.users[k];
            let mut o = spec.to_json();
            o["step"] = json!(k + 1);
            o["users"] = json!(users);
            o["converted"] = s.users.get(k + 1).map_or(Value::Null, |n| json!(n));
            o["dropped"] = s.users.get(k + 1).map_or(Value::Null, |n| json!(users - n));
            o["conversion_from_previous"] = if k == 0 {
                ratio(users, users)
            } else {
                ratio(users, s.users[k - 1])
            };
            o["conversion_from_first"] = ratio(users, s.users[0]);
            o["median_seconds_to_convert"] = match (k, s.median_ns[k]) {
                (0, _) | (_, None) => Value::Null,
                (_, Some(ns)) => json!(ns / 1e9),
            };
            o
        })
        .collect()
}

/// `POST /api/v1/analytics/funnel`: users through ordered steps within a conversion window
/// (strict order; see `eddy_store::journeys::funnel_user` for what counts when steps repeat).
#[utoipa::path(post, path = "/api/v1/analytics/funnel", tag = "analytics", operation_id = "funnel", summary = "Users through ordered steps within a window", request_body(content = Object, description = "`{\"steps\": [{\"type\", \"where\"}], \"window\": \"1h\", \"from\", \"to\", \"breakdown\"}`"), responses((status = 200, description = "`{steps: [{users, converted, conversion_from_previous, conversion_from_first, median_seconds_to_convert}], breakdown}`", body = Object), Errors))]
pub(crate) async fn funnel(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let req: FunnelRequest = parse_json(&body)?;
    if !(1..=MAX_STEPS).contains(&req.steps.len()) {
        return Err(bad(format!("`steps`: 1 to {MAX_STEPS} steps")));
    }
    let steps = req
        .steps
        .iter()
        .enumerate()
        .map(|(k, s)| s.parse(&format!("step {}", k + 1)))
        .collect::<Result<Vec<_>>>()?;
    let window_ns = match &req.window {
        Some(w) => duration("window", w)?,
        None => DAY_NS,
    };
    let mut range = Range::new(&state);
    range.from = body_time("from", &req.from, range.now)?;
    range.to = body_time("to", &req.to, range.now)?;
    let (from, to) = range.resolve()?;
    let breakdown = req
        .breakdown
        .as_deref()
        .map(|b| field_param("breakdown", b))
        .transpose()?;
    let answer = state
        .query
        .funnel(
            &p.tenant_id,
            FunnelQuery {
                from,
                to,
                window_ns,
                steps,
                breakdown: breakdown.clone(),
                max_groups: req.breakdown_limit.unwrap_or(20).clamp(1, 1000),
                max_events: 50_000_000,
            },
        )
        .await?;
    let mut out = json!({
        "from": rfc(from),
        "to": rfc(to),
        "window_seconds": window_ns / 1_000_000_000,
        "steps": steps_json(&req.steps, &answer.overall),
    });
    if let Some(b) = breakdown {
        out["breakdown"] = json!({
            "field": b.name(),
            "groups": answer.groups.iter().map(|(v, s)| json!({
                "value": v, "steps": steps_json(&req.steps, s),
            })).collect::<Vec<_>>(),
            "omitted_groups": answer.groups_omitted,
        });
    }
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRequest {
    cohort: EventSpec,
    #[serde(rename = "return")]
    r#return: EventSpec,
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    periods: Option<usize>,
    #[serde(default)]
    from: Option<Value>,
    #[serde(default)]
    to: Option<Value>,
}

/// `POST /api/v1/analytics/retention`: users grouped by the bucket (day or week) of their
/// first-ever `cohort` event within `[from, to)`; per later bucket, the share that did a
/// `return` event (in bucket 0: after their first event). Buckets that have not started yet
/// are left out.
#[utoipa::path(post, path = "/api/v1/analytics/retention", tag = "analytics", operation_id = "retention", summary = "Cohorts by first event and their returns per period", request_body(content = Object, description = "`{\"cohort\", \"return\", \"period\": \"day|week\", \"periods\", \"from\", \"to\"}`"), responses((status = 200, description = "`{cohorts: [{start, users, retention: [{period, users, share}]}], average}`", body = Object), Errors))]
pub(crate) async fn retention(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let req: RetentionRequest = parse_json(&body)?;
    let period = match req.period.as_deref().unwrap_or("day") {
        "day" => Period::Day,
        "week" => Period::Week,
        other => return Err(bad(format!("`period` `{other}`: use day or week"))),
    };
    let periods = req.periods.unwrap_or(match period {
        Period::Day => 14,
        Period::Week => 8,
    });
    if !(1..=366).contains(&periods) {
        return Err(bad("`periods`: 1 to 366"));
    }
    let mut range = Range::new(&state);
    range.from = body_time("from", &req.from, range.now)?;
    range.to = body_time("to", &req.to, range.now)?;
    if range.from.is_none() {
        let len = period.nanos() * i64::try_from(periods).unwrap_or(1);
        range.from = Some(range.to.unwrap_or(range.now).saturating_sub(len));
    }
    let (from, to) = range.resolve()?;
    let cohorts = state
        .query
        .retention(
            &p.tenant_id,
            RetentionQuery {
                from,
                to,
                cohort: req.cohort.parse("cohort")?,
                r#return: req.r#return.parse("return")?,
                period,
                periods,
            },
        )
        .await?;
    let now = range.now;
    let mut totals = vec![(0u64, 0u64, 0u64); periods + 1]; // (returned, cohort users, cohorts)
    let data: Vec<Value> = cohorts
        .iter()
        .map(|c| {
            let started = |k: usize| c.start + period.nanos() * k as i64 <= now;
            let rows: Vec<Value> = c
                .returned
                .iter()
                .enumerate()
                .filter(|(k, _)| started(*k))
                .map(|(k, n)| {
                    totals[k].0 += n;
                    totals[k].1 += c.users;
                    totals[k].2 += 1;
                    json!({"period": k, "users": n, "share": ratio(*n, c.users)})
                })
                .collect();
            json!({"start": rfc(c.start), "users": c.users, "retention": rows})
        })
        .collect();
    Ok(Json(json!({
        "period": period.name(),
        "from": rfc(from),
        "to": rfc(to),
        "cohort": req.cohort.to_json(),
        "return": req.r#return.to_json(),
        "cohorts": data,
        "average": totals.iter().enumerate().filter(|(_, t)| t.2 > 0).map(|(k, t)| json!({
            "period": k, "share": ratio(t.0, t.1), "cohorts": t.2,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// A `Write` whose bytes are taken out after each batch (the Parquet writer's sink).
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(
            &mut *self.0.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

/// How an export is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    Csv,
    Ndjson,
    Parquet,
}

/// Encodes batches of events one by one, carrying the Parquet writer between them.
struct Encoder {
    format: ExportFormat,
    parquet: Option<(parquet::arrow::ArrowWriter<Shared>, Shared)>,
    header: bool,
}

/// Rows per Parquet row group of an export (its in-progress group is what stays in memory).
const EXPORT_ROW_GROUP: usize = 64 * 1024;

impl Encoder {
    fn encode(&mut self, b: &arrow::array::RecordBatch) -> Result<Bytes> {
        match self.format {
            ExportFormat::Ndjson => {
                let mut out = Vec::new();
                for e in eddy_store::rows::events_of(std::slice::from_ref(b))? {
                    serde_json::to_writer(&mut out, &e)
                        .map_err(|e| Domain::Internal(format!("ndjson: {e}")))?;
                    out.push(b'\n');
                }
                Ok(out.into())
            }
            ExportFormat::Csv => {
                let rows = eddy_store::rows::events_of(std::slice::from_ref(b))?;
                let header = std::mem::take(&mut self.header);
                Ok(events_csv(&rows, header)?.into())
            }
            ExportFormat::Parquet => {
                let fail =
                    |e: parquet::errors::ParquetError| Domain::Internal(format!("parquet: {e}"));
                if self.parquet.is_none() {
                    let sink = Shared::default();
                    let props = parquet::file::properties::WriterProperties::builder()
                        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                        .set_max_row_group_row_count(Some(EXPORT_ROW_GROUP))
                        .build();
                    let w =
                        parquet::arrow::ArrowWriter::try_new(sink.clone(), b.schema(), Some(props))
                            .map_err(fail)?;
                    self.parquet = Some((w, sink));
                }
                let Some((w, sink)) = self.parquet.as_mut() else {
                    return Ok(Bytes::new());
                };
                w.write(b).map_err(fail)?;
                Ok(sink.take())
            }
        }
    }

    /// What is left to write after the last batch (the Parquet footer; the CSV header when
    /// there were no rows).
    fn finish(&mut self) -> Result<Bytes> {
        let fail = |e: parquet::errors::ParquetError| Domain::Internal(format!("parquet: {e}"));
        match self.format {
            ExportFormat::Csv if self.header => {
                self.header = false;
                Ok(events_csv(&[], true)?.into())
            }
            ExportFormat::Parquet => {
                if self.parquet.is_none() {
                    self.encode(&arrow::array::RecordBatch::new_empty(
                        eddy_store::schema::events_schema(),
                    ))?;
                }
                match self.parquet.take() {
                    Some((w, sink)) => {
                        w.close().map_err(fail)?;
                        Ok(sink.take())
                    }
                    None => Ok(Bytes::new()),
                }
            }
            _ => Ok(Bytes::new()),
        }
    }
}

/// `GET /api/v1/export?format=csv|ndjson|parquet&from=&to=`: the tenant's raw events in
/// `(time, offset)` order, streamed as they are read (the whole answer is never in memory;
/// the default range is all time). An error after the first bytes ends the response early (the
/// chunked body has no end), so a partial export cannot be mistaken for a whole one.
#[utoipa::path(get, path = "/api/v1/export", tag = "analytics", operation_id = "export", summary = "Raw events, streamed in time order", params(("format" = Option<String>, Query, description = "csv, ndjson (default) or parquet"), ("from" = Option<String>, Query, description = "Start; default all time"), ("to" = Option<String>, Query, description = "End; default all time")), responses((status = 200, description = "CSV, NDJSON or Parquet, streamed", body = String), Errors))]
pub(crate) async fn export(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let mut range = Range::new(&state);
    let mut format = None;
    for (k, v) in &pairs {
        if range.take(k, v)? {
            continue;
        }
        match k.as_str() {
            "format" => {
                format = Some(match v.as_str() {
                    "csv" => ExportFormat::Csv,
                    "ndjson" => ExportFormat::Ndjson,
                    "parquet" => ExportFormat::Parquet,
                    other => {
                        return Err(bad(format!(
                            "`format` `{other}`: use csv, ndjson or parquet"
                        )));
                    }
                })
            }
            other => return Err(unknown(other, "format, from, to")),
        }
    }
    let format = format.unwrap_or_else(|| {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/csv") {
            ExportFormat::Csv
        } else if accept.contains("parquet") {
            ExportFormat::Parquet
        } else {
            ExportFormat::Ndjson
        }
    });
    let from = range.from.unwrap_or(i64::MIN);
    let to = range.to.unwrap_or(i64::MAX);
    if from >= to {
        return Err(bad("`from` must be before `to`"));
    }
    let mut rx = state.query.export(&p.tenant_id, from, to).await?;
    // The first batch (or error) before answering, so a failing query is a proper error.
    let first = rx.recv().await.transpose()?;
    let encoder = Encoder {
        format,
        parquet: None,
        header: true,
    };
    let stream = export_body(first, rx, encoder);
    let (mime, ext) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
        ExportFormat::Parquet => ("application/vnd.apache.parquet", "parquet"),
    };
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"events.{ext}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Where an export's body stream is.
enum Stage {
    First(Option<arrow::array::RecordBatch>),
    More,
    Done,
}

/// The body of an export: the first batch, the rest from `rx`, then the encoder's end. An
/// error is logged and ends the body early.
fn export_body(
    first: Option<arrow::array::RecordBatch>,
    rx: tokio::sync::mpsc::Receiver<eddy_store::Result<arrow::array::RecordBatch>>,
    encoder: Encoder,
) -> impl futures_util::Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send {
    let failed = |e: Error| {
        tracing::error!(error = %e, "export ended early");
        std::io::Error::other(e.to_string())
    };
    futures_util::stream::unfold(
        (Stage::First(first), rx, encoder),
        move |(stage, mut rx, mut enc)| async move {
            let batch = match stage {
                Stage::Done => return None,
                Stage::First(b) => b,
                Stage::More => match rx.recv().await {
                    Some(Ok(b)) => Some(b),
                    Some(Err(e)) => return Some((Err(failed(e.into())), (Stage::Done, rx, enc))),
                    None => None,
                },
            };
            let (out, next) = match batch {
                Some(b) => (enc.encode(&b), Stage::More),
                None => (enc.finish(), Stage::Done),
            };
            match out {
                Ok(bytes) => Some((Ok(bytes), (next, rx, enc))),
                Err(e) => Some((Err(failed(e)), (Stage::Done, rx, enc))),
            }
        },
    )
}

/// `GET /api/v1/metrics/export?format=prometheus|json|csv`: the newest value of every
/// (device, metric) of the tenant.
#[utoipa::path(get, path = "/api/v1/metrics/export", tag = "analytics", operation_id = "metrics_export", summary = "Newest value of every (device, metric)", params(("format" = Option<String>, Query, description = "prometheus (default), json or csv")), responses((status = 200, description = "Prometheus text, JSON or CSV", body = String), Errors))]
pub(crate) async fn metrics_export(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let mut format = "prometheus".to_string();
    for (k, v) in &pairs {
        match k.as_str() {
            "format" => format = v.clone(),
            other => return Err(unknown(other, "format")),
        }
    }
    let latest = state.query.latest_metrics(&p.tenant_id).await?;
    match format.as_str() {
        "json" => Ok(Json(json!({
            "data": latest.iter().map(|m| json!({
                "device_id": m.device_id, "metric": m.metric, "time": rfc(m.time), "value": m.value,
            })).collect::<Vec<_>>(),
        }))
        .into_response()),
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let fail = |e: csv::Error| Domain::Internal(format!("csv: {e}"));
            w.write_record(["device_id", "metric", "time", "value"])
                .map_err(fail)?;
            for m in &latest {
                w.write_record([&m.device_id, &m.metric, &rfc(m.time), &m.value.to_string()])
                    .map_err(fail)?;
            }
            let body = w
                .into_inner()
                .map_err(|e| Domain::Internal(format!("csv: {e}")))?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
        }
        "prometheus" => {
            let mut out = String::from(
                "# HELP eddy_device_metric Newest value of a device metric.\n# TYPE eddy_device_metric gauge\n",
            );
            for m in &latest {
                out.push_str(&format!(
                    "eddy_device_metric{{device_id=\"{}\",metric=\"{}\"}} {} {}\n",
                    prometheus_label(&m.device_id),
                    prometheus_label(&m.metric),
                    prometheus_value(m.value),
                    m.time.div_euclid(1_000_000)
                ));
            }
            Ok((
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                out,
            )
                .into_response())
        }
        other => Err(bad(format!(
            "`format` `{other}`: use prometheus, json or csv"
        ))),
    }
}

/// A label value in the Prometheus text format: `\`, `"` and newlines escaped.
fn prometheus_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prometheus_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        v.to_string()
    }
}
