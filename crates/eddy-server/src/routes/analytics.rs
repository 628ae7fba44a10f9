//! The analytics routes (`read` scope, the caller's tenant only): summary, top-N, grouped time
//! series, one user's activity, funnels, retention, and exports of raw events and of the
//! latest device metrics.
//!
//! Every parameter is validated (unknown ones are an error, so a typo never widens a
//! question); `from`/`to` take RFC 3339, epoch numbers, `now` or relative times like `-24h`.
//! The questions and their answers are `eddy_service::analytics`'s; this module parses,
//! encodes and streams.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use eddy_service::analytics::{
    Agg, ClickQuery, Condition, EventSpec, Field, FunnelRequest, GroupedRequest, Measure, Period,
    RetentionRequest, UserRequest,
};
use eddy_service::export::{self, ExportFormat};
use eddy_service::range::TimeRange;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;
use crate::auth::Reader;
use crate::openapi::{DurationArg, ErrorBody, Errors, FilterParams, RangeParams, TimeArg};
use crate::routes::ListOf;
use crate::routes::SmallBody;
use crate::routes::params::{Offer, bad, bucket_secs, negotiate, take_range, time, unknown, whole};
use crate::routes::parse_json;
use crate::state::AppState;

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
    state: &AppState,
    pairs: &[(String, String)],
    range: &mut TimeRange,
    known: &str,
    mut own: impl FnMut(&str, &str) -> Result<bool>,
) -> Result<Vec<Condition>> {
    let now = state.clock.now_ns();
    let mut filter = Vec::new();
    for (k, v) in pairs {
        if take_range(range, k, v, now)? || own(k, v)? {
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

/// The summary routes' parameters: the range and the length of the top lists.
fn summary_params(state: &AppState, pairs: &[(String, String)]) -> Result<(TimeRange, usize)> {
    let now = state.clock.now_ns();
    let mut range = TimeRange::default();
    let mut top = 10;
    for (k, v) in pairs {
        if take_range(&mut range, k, v, now)? {
            continue;
        }
        match k.as_str() {
            "top" | "limit" => top = whole(k, v, 1000)?,
            other => return Err(unknown(other, "from, to, top")),
        }
    }
    Ok((range, top))
}

/// `GET /api/v1/analytics/summary`: totals, rates and top lists of the range, the same for the
/// period of equal length before it, and the relative change.
#[utoipa::path(get, path = "/api/v1/analytics/summary", tag = "analytics", operation_id = "summary", summary = "Totals, rates and top lists, with the previous period", params(RangeParams, ("top" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Length of the top lists (default 10)")), responses((status = 200, description = "The range, the period of equal length before it, and the relative changes (`null`: nothing in the previous period)", body = eddy_service::analytics::SummaryAnswer), Errors))]
pub(crate) async fn summary(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let (range, top) = summary_params(&state, &pairs)?;
    let answer = state
        .services
        .analytics
        .summary(&caller, range, top)
        .await?;
    Ok(Json(answer).into_response())
}

/// `GET /api/v1/overview`: the summary of the range beside the previous period, the newest open
/// alerts with their count, and the pipeline's health, in one answer.
#[utoipa::path(get, path = "/api/v1/overview", tag = "analytics", operation_id = "overview", summary = "Summary, open alerts and pipeline health in one answer", params(RangeParams, ("top" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Length of the top lists (default 10)"), ("alerts" = Option<usize>, Query, minimum = 0, maximum = 100, description = "Open alerts listed, newest first (default 5); `open_alerts.total` counts them all")), responses((status = 200, description = "The overview", body = eddy_service::overview::OverviewAnswer), Errors))]
pub(crate) async fn overview(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let now = state.clock.now_ns();
    let mut q = eddy_service::overview::OverviewQuery::default();
    for (k, v) in &pairs {
        if take_range(&mut q.range, k, v, now)? {
            continue;
        }
        let n = || {
            v.parse::<usize>()
                .map_err(|_| bad(format!("`{k}` `{v}`: a whole number")))
        };
        match k.as_str() {
            "top" => q.top = Some(n()?),
            "alerts" => q.alerts = Some(n()?),
            other => return Err(unknown(other, "from, to, top, alerts")),
        }
    }
    let answer = state.services.overview.overview(&caller, q).await?;
    Ok(Json(answer).into_response())
}

/// `GET /analytics/summary` and `GET /v1/analytics/summary`: the same figures in the flat shape
/// product-analytics clients read.
#[utoipa::path(get, path = "/analytics/summary", tag = "analytics", operation_id = "summary_compat", summary = "Summary in the flat shape product-event clients read", params(RangeParams, ("top" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Length of the top lists (default 10)")), responses((status = 200, description = "Totals of the range in the flat shape", body = CompatSummary), Errors))]
pub(crate) async fn summary_compat(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let (range, top) = summary_params(&state, &pairs)?;
    let a = state
        .services
        .analytics
        .summary(&caller, range, top)
        .await?;
    let cur = &a.current;
    Ok(Json(CompatSummary {
        total_events: cur.events,
        unique_users: cur.users,
        unique_devices: cur.devices,
        event_types: cur
            .by_type
            .iter()
            .map(|c| (c.value.as_str().unwrap_or("").to_string(), c.count))
            .collect(),
        top_pages: cur
            .top_pages
            .iter()
            .map(|c| PageCount {
                page: c.value.clone(),
                count: c.count,
            })
            .collect(),
        top_sources: cur
            .top_sources
            .iter()
            .map(|c| SourceCount {
                source: c.value.clone(),
                count: c.count,
            })
            .collect(),
        error_events: cur.errors,
        previous_total_events: a.previous.events,
        start_time: a.from,
        end_time: a.to,
    })
    .into_response())
}

/// The summary in the flat shape product-analytics clients read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CompatSummary {
    total_events: u64,
    unique_users: u64,
    unique_devices: u64,
    /// Events per type.
    event_types: std::collections::BTreeMap<String, u64>,
    top_pages: Vec<PageCount>,
    top_sources: Vec<SourceCount>,
    /// Events of type `error`.
    error_events: u64,
    /// Events in the period of equal length before the range.
    previous_total_events: u64,
    #[serde(serialize_with = "eddy_model::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    start_time: i64,
    #[serde(serialize_with = "eddy_model::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    end_time: i64,
}

/// A page and its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PageCount {
    page: Value,
    count: u64,
}

/// A source and its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SourceCount {
    source: Value,
    count: u64,
}

/// `GET /v1/analytics/summary`: [`summary_compat`] at the gateway-style path.
#[utoipa::path(get, path = "/v1/analytics/summary", tag = "analytics", operation_id = "summary_compat_v1", summary = "Summary in the flat shape product-event clients read", params(RangeParams, ("top" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Length of the top lists (default 10)")), responses((status = 200, description = "Totals of the range in the flat shape", body = CompatSummary), Errors))]
pub(crate) async fn summary_compat_v1(
    state: State<AppState>,
    Reader(caller): Reader,
    pairs: Query<Vec<(String, String)>>,
) -> Result<Response> {
    summary_compat(state, Reader(caller), pairs).await
}

/// `GET /api/v1/analytics/top?dimension=&limit=`: the most frequent values with counts,
/// distinct users and share of the events that have the field.
#[utoipa::path(get, path = "/api/v1/analytics/top", tag = "analytics", operation_id = "top", summary = "Top values of a field with counts, users and share", params(("dimension" = String, Query, pattern = "^(page_url|type|source|device_id|user_id|property:.+)$", description = "`page_url`, `type`, `source`, `device_id`, `user_id` or `property:KEY`"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "How many (default 10)"), RangeParams, FilterParams), responses((status = 200, description = "The values with counts, distinct users and share of the events that have the field", body = eddy_service::analytics::TopAnswer), Errors))]
pub(crate) async fn top(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let mut range = TimeRange::default();
    let (mut field, mut limit) = (None, 10);
    let filter = read_filtered(&state, &pairs, &mut range, "dimension, limit", |k, v| {
        match k {
            "dimension" | "by" => field = Some(field_param(k, v)?),
            "limit" => limit = whole(k, v, 1000)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let field = required_field(field, "dimension")?;
    let answer = state
        .services
        .analytics
        .top(&caller, range, field, limit, filter)
        .await?;
    Ok(Json(answer).into_response())
}

/// `GET /analytics/events`: click counts per (user, page) in the shape click-tracking clients
/// read — `{"data": [{"user_id", "page_url", "clicks"}], "total_clicks"}` — filtered by
/// `user_id` / `page_url`, over `from`/`to` (default: the last 24 hours).
#[utoipa::path(get, path = "/analytics/events", tag = "analytics", operation_id = "click_counts", summary = "Click counts per (user, page)", params(("user_id" = Option<String>, Query, description = "One user"), ("page_url" = Option<String>, Query, description = "One page"), ("event_type" = Option<String>, Query, description = "Event type counted (default click)"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Users and pages listed (default 100)"), RangeParams), responses((status = 200, description = "Clicks per (user, page), most first", body = eddy_service::analytics::ClickCounts), Errors))]
pub(crate) async fn click_counts(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let now = state.clock.now_ns();
    let mut q = ClickQuery {
        range: TimeRange::default(),
        event_type: None,
        user_id: Vec::new(),
        page_url: Vec::new(),
        limit: 100,
    };
    for (k, v) in &pairs {
        if take_range(&mut q.range, k, v, now)? {
            continue;
        }
        match k.as_str() {
            "user_id" => q.user_id.push(v.clone()),
            "page_url" => q.page_url.push(v.clone()),
            "event_type" | "type" => q.event_type = Some(v.clone()),
            "limit" => q.limit = whole(k, v, 1000)?,
            other => {
                return Err(unknown(
                    other,
                    "user_id, page_url, event_type, limit, from, to",
                ));
            }
        }
    }
    Ok(Json(state.services.analytics.click_counts(&caller, q).await?).into_response())
}

/// `GET /api/v1/analytics/timeseries?measure=&group_by=&bucket=&limit=`: per bucket, the
/// measure (`count`, `distinct_users` or `metric:NAME` with `agg`) for each of the `limit`
/// (default 5) largest groups over the range, and for all others together (`"other": true`).
#[utoipa::path(get, path = "/api/v1/analytics/timeseries", tag = "analytics", operation_id = "grouped_timeseries", summary = "A measure per bucket for the top groups and \"other\"", params(("measure" = Option<String>, Query, pattern = "^(count|distinct_users|metric:.+)$", description = "`count` (default), `distinct_users` or `metric:NAME`"), ("agg" = Option<String>, Query, pattern = "^(avg|sum|min|max|count)$", description = "With `metric:NAME`: `avg` (default), `sum`, `min`, `max` or `count`"), ("group_by" = String, Query, pattern = "^(page_url|type|source|device_id|user_id|property:.+)$", description = "`type`, `page_url`, `source`, `device_id`, `user_id` or `property:KEY`"), ("bucket" = Option<String>, Query, description = "Bucket width (default 1h)"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "Groups shown (default 5)"), RangeParams, FilterParams), responses((status = 200, description = "One series per top group, then \"other\"", body = eddy_service::analytics::GroupedAnswer), Errors))]
pub(crate) async fn grouped_timeseries(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let mut range = TimeRange::default();
    let (mut measure, mut agg, mut field) = (None, None, None);
    let (mut bucket, mut limit) = (3600, 5);
    let filter = read_filtered(
        &state,
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
                "bucket" => bucket = bucket_secs(v, u64::MAX)?,
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
    let q = GroupedRequest {
        range,
        bucket_secs: bucket,
        field: required_field(field, "group_by")?,
        measure,
        limit,
        filter,
    };
    Ok(Json(state.services.analytics.grouped(&caller, q).await?).into_response())
}

/// `GET /api/v1/analytics/users/{user_id}`: first/last seen, events by type, pages, devices,
/// sessions (split after `session_gap`, default 30m, of inactivity; newest first) and the most
/// recent events. The range defaults to the last 30 days. 404 when the user has no events in
/// it.
#[utoipa::path(get, path = "/api/v1/analytics/users/{user_id}", tag = "analytics", operation_id = "user", summary = "One user's activity and sessions", params(("user_id" = String, Path, description = "User id"), ("session_gap" = Option<String>, Query, description = "Inactivity that starts a new session (default 30m)"), ("sessions" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Sessions listed (default 50)"), ("recent" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Recent events listed (default 20)"), ("top" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Pages and devices listed (default 20)"), RangeParams), responses((status = 200, description = "First/last seen, counts, sessions, recent events", body = eddy_service::analytics::UserAnswer), (status = 404, description = "No events of this user in the range", body = ErrorBody), Errors))]
pub(crate) async fn user(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(user_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let now = state.clock.now_ns();
    let mut q = UserRequest {
        user_id,
        range: TimeRange::default(),
        session_gap_ns: 30 * 60 * 1_000_000_000,
        sessions: 50,
        recent: 20,
        top: 20,
    };
    for (k, v) in &pairs {
        if take_range(&mut q.range, k, v, now)? {
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
    Ok(Json(state.services.analytics.user(&caller, q).await?).into_response())
}

/// A time in a JSON body: a string as in query parameters, or an epoch number.
fn body_time(name: &str, v: &Option<Value>, now: i64) -> Result<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => time(name, s, now).map(Some),
        Some(Value::Number(n)) => time(name, &n.to_string(), now).map(Some),
        Some(_) => Err(bad(format!("`{name}`: a time string or an epoch number"))),
    }
}

fn body_range(from: &Option<Value>, to: &Option<Value>, now: i64) -> Result<TimeRange> {
    Ok(TimeRange {
        from: body_time("from", from, now)?,
        to: body_time("to", to, now)?,
        now: Some(now),
    })
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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum EventBody {
    Type(String),
    Full {
        r#type: String,
        /// Field or property name → string, number or boolean the event must have.
        #[serde(default, rename = "where")]
        #[schema(value_type = Object)]
        conditions: std::collections::BTreeMap<String, Value>,
    },
}

impl From<EventBody> for EventSpec {
    fn from(b: EventBody) -> Self {
        match b {
            EventBody::Type(r#type) => EventSpec {
                r#type,
                conditions: Default::default(),
            },
            EventBody::Full { r#type, conditions } => EventSpec { r#type, conditions },
        }
    }
}

/// A funnel question.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FunnelBody {
    /// 1 to 16 steps, in order.
    #[schema(min_items = 1, max_items = 16)]
    steps: Vec<EventBody>,
    /// Conversion window from the first step: a duration such as `"1h"`, or seconds (default
    /// one day).
    #[serde(default)]
    #[schema(value_type = Option<DurationArg>)]
    window: Option<Value>,
    /// Start of the range (default 24 h before `to`).
    #[serde(default)]
    #[schema(value_type = Option<TimeArg>)]
    from: Option<Value>,
    /// End of the range (default now).
    #[serde(default)]
    #[schema(value_type = Option<TimeArg>)]
    to: Option<Value>,
    /// Split by this field of the entry event (`type`, `source`, `device_id`, `user_id`,
    /// `page_url` or `property:KEY`).
    #[serde(default)]
    breakdown: Option<String>,
    /// Breakdown groups shown (default 20; values beyond 1 to 1000 are clamped to it).
    #[serde(default)]
    breakdown_limit: Option<usize>,
}

/// `POST /api/v1/analytics/funnel`: users through ordered steps within a conversion window
/// (strict order; see `eddy_store::journeys::funnel_user` for what counts when steps repeat).
#[utoipa::path(post, path = "/api/v1/analytics/funnel", tag = "analytics", operation_id = "funnel", summary = "Users through ordered steps within a window", request_body(content = FunnelBody, description = "1 to 16 ordered steps, the conversion window, the range, and an optional breakdown field"), responses((status = 200, description = "Users per step, conversions and median times, and the breakdown when asked", body = eddy_service::analytics::FunnelAnswer), (status = 413, description = "Body over 128 KiB (the query cache reads at most that)", body = ErrorBody), Errors))]
pub(crate) async fn funnel(
    State(state): State<AppState>,
    Reader(caller): Reader,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    let req: FunnelBody = parse_json(&body)?;
    let now = state.clock.now_ns();
    let q = FunnelRequest {
        steps: req.steps.into_iter().map(EventSpec::from).collect(),
        window_ns: req
            .window
            .as_ref()
            .map(|w| duration("window", w))
            .transpose()?,
        range: body_range(&req.from, &req.to, now)?,
        breakdown: req
            .breakdown
            .as_deref()
            .map(|b| field_param("breakdown", b))
            .transpose()?,
        breakdown_limit: req.breakdown_limit,
    };
    Ok(Json(state.services.analytics.funnel(&caller, q).await?).into_response())
}

/// A retention question.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionBody {
    /// The event that puts a user in the cohort of its period (the first one counts).
    cohort: EventBody,
    /// The event that counts as a return.
    #[serde(rename = "return")]
    r#return: EventBody,
    /// `day` (default) or `week`.
    #[serde(default)]
    #[schema(pattern = "^(day|week)$")]
    period: Option<String>,
    /// Periods followed (default 14 days or 8 weeks).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 366)]
    periods: Option<usize>,
    /// Start (default: `periods` periods before `to`).
    #[serde(default)]
    #[schema(value_type = Option<TimeArg>)]
    from: Option<Value>,
    /// End (default now).
    #[serde(default)]
    #[schema(value_type = Option<TimeArg>)]
    to: Option<Value>,
}

/// `POST /api/v1/analytics/retention`: users grouped by the bucket (day or week) of their
/// first-ever `cohort` event within `[from, to)`; per later bucket, the share that did a
/// `return` event (in bucket 0: after their first event). Buckets that have not started yet
/// are left out.
#[utoipa::path(post, path = "/api/v1/analytics/retention", tag = "analytics", operation_id = "retention", summary = "Cohorts by first event and their returns per period", request_body(content = RetentionBody, description = "The cohort event, the return event, day or week periods, and the range"), responses((status = 200, description = "Cohorts with their returns per period, and the averages", body = eddy_service::analytics::RetentionAnswer), (status = 413, description = "Body over 128 KiB (the query cache reads at most that)", body = ErrorBody), Errors))]
pub(crate) async fn retention(
    State(state): State<AppState>,
    Reader(caller): Reader,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    let req: RetentionBody = parse_json(&body)?;
    let period = match req.period.as_deref().unwrap_or("day") {
        "day" => Period::Day,
        "week" => Period::Week,
        other => return Err(bad(format!("`period` `{other}`: use day or week"))),
    };
    let q = RetentionRequest {
        cohort: req.cohort.into(),
        r#return: req.r#return.into(),
        period,
        periods: req.periods,
        range: body_range(&req.from, &req.to, state.clock.now_ns())?,
    };
    Ok(Json(state.services.analytics.retention(&caller, q).await?).into_response())
}

/// The formats of an export (NDJSON by default).
const EXPORT_FORMATS: &[Offer<ExportFormat>] = &[
    Offer {
        name: "ndjson",
        media: &["application/x-ndjson", "application/ndjson"],
        format: ExportFormat::Ndjson,
    },
    Offer {
        name: "csv",
        media: &["text/csv"],
        format: ExportFormat::Csv,
    },
    Offer {
        name: "parquet",
        media: &["application/vnd.apache.parquet", "application/parquet"],
        format: ExportFormat::Parquet,
    },
];

/// The formats of the newest device metrics (Prometheus text by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricsFormat {
    Prometheus,
    Json,
    Csv,
}

const METRICS_FORMATS: &[Offer<MetricsFormat>] = &[
    Offer {
        name: "prometheus",
        media: &["text/plain"],
        format: MetricsFormat::Prometheus,
    },
    Offer {
        name: "json",
        media: &["application/json"],
        format: MetricsFormat::Json,
    },
    Offer {
        name: "csv",
        media: &["text/csv"],
        format: MetricsFormat::Csv,
    },
];

/// `GET /api/v1/export?format=csv|ndjson|parquet&from=&to=`: the tenant's raw events in
/// `(time, offset)` order, streamed as they are read (the whole answer is never in memory;
/// the default range is all time). An error after the first bytes ends the response early (the
/// chunked body has no end), so a partial export cannot be mistaken for a whole one.
#[utoipa::path(get, path = "/api/v1/export", tag = "analytics", operation_id = "export", summary = "Raw events, streamed in time order", params(("format" = Option<String>, Query, pattern = "^(csv|ndjson|parquet)$", description = "`csv`, `ndjson` (default) or `parquet` (or `Accept`)"), ("from" = Option<String>, Query, description = "Start; default all time"), ("to" = Option<String>, Query, description = "End; default all time")), responses((status = 200, description = "Events in time order, streamed", content((String = "application/x-ndjson"), (String = "text/csv"), (Vec<u8> = "application/vnd.apache.parquet")), headers(("content-disposition" = String, description = "`attachment; filename=\"events.EXT\"`"))), Errors))]
pub(crate) async fn export(
    State(state): State<AppState>,
    Reader(caller): Reader,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let now = state.clock.now_ns();
    let mut range = TimeRange::default();
    let mut format = None;
    for (k, v) in &pairs {
        if take_range(&mut range, k, v, now)? {
            continue;
        }
        match k.as_str() {
            "format" => format = Some(v.clone()),
            other => return Err(unknown(other, "format, from, to")),
        }
    }
    let format = negotiate(format.as_deref(), &headers, EXPORT_FORMATS)?;
    let stream = state
        .services
        .analytics
        .export(&caller, range, format)
        .await?;
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next().await?.map_err(|e| {
            tracing::error!(error = %e, "export ended early");
            std::io::Error::other(e.to_string())
        });
        Some((chunk, s))
    });
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    let disposition = format!("attachment; filename=\"events.{}\"", format.extension());
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `GET /api/v1/metrics/export?format=prometheus|json|csv`: the newest value of every
/// (device, metric) of the tenant.
#[utoipa::path(get, path = "/api/v1/metrics/export", tag = "analytics", operation_id = "metrics_export", summary = "Newest value of every (device, metric)", params(("format" = Option<String>, Query, pattern = "^(prometheus|json|csv)$", description = "`prometheus` (default), `json` or `csv` (or `Accept`)")), responses((status = 200, description = "Prometheus text, JSON or CSV", content((String = "text/plain"), (ListOf<LatestBody> = "application/json"), (String = "text/csv"))), Errors))]
pub(crate) async fn metrics_export(
    State(state): State<AppState>,
    Reader(caller): Reader,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let mut format = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "format" => format = Some(v.clone()),
            other => return Err(unknown(other, "format")),
        }
    }
    let format = negotiate(format.as_deref(), &headers, METRICS_FORMATS)?;
    let latest = state.services.analytics.latest_metrics(&caller).await?;
    Ok(match format {
        MetricsFormat::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            export::latest_json(&latest)?,
        )
            .into_response(),
        MetricsFormat::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            export::latest_csv(&latest)?,
        )
            .into_response(),
        MetricsFormat::Prometheus => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            export::prometheus_text(&latest),
        )
            .into_response(),
    })
}

/// The newest value of one (device, metric) (a schema only: `export::latest_json` writes it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct LatestBody<'a> {
    device_id: &'a str,
    metric: &'a str,
    #[serde(serialize_with = "eddy_model::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    time: i64,
    value: f64,
}
