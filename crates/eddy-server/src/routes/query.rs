//! Read routes served from the store, all scoped to the caller's tenant (`read` scope).
//!
//! Lists answer `{"data": [...], "next_cursor": …}` as JSON, or NDJSON / CSV when asked
//! (`?format=` or `Accept`), with the cursor in the `x-next-cursor` header.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use eddy_service::export;
use eddy_service::query::{Cursor, EventFilter, SourceChoice, StoredEvent, TimeseriesQuery};

use crate::Result;
use crate::auth::Reader;
use crate::openapi::{ErrorBody, Errors, RangeParams};
use crate::routes::Page;
use crate::routes::params::{Offer, bad, bucket_secs, negotiate, take_range, unknown, whole};
use crate::state::AppState;
use eddy_service::Error as Domain;
use eddy_service::range::{DAY_NS, TimeRange};

const DEFAULT_LIMIT: usize = 100;

/// How a list should be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
    Csv,
}

/// The formats an event list is written in (JSON by default).
const FORMATS: &[Offer<Format>] = &[
    Offer {
        name: "json",
        media: &["application/json"],
        format: Format::Json,
    },
    Offer {
        name: "ndjson",
        media: &["application/x-ndjson", "application/ndjson"],
        format: Format::Ndjson,
    },
    Offer {
        name: "csv",
        media: &["text/csv"],
        format: Format::Csv,
    },
];

fn render(rows: Vec<StoredEvent>, next_cursor: Option<String>, format: Format) -> Result<Response> {
    let mut resp = match format {
        Format::Json => Json(Page {
            data: rows,
            next_cursor: next_cursor.clone(),
        })
        .into_response(),
        Format::Ndjson => (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            export::events_ndjson(&rows)?,
        )
            .into_response(),
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            export::events_csv(&rows, true)?,
        )
            .into_response(),
    };
    if let Some(c) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert("x-next-cursor", c);
    }
    Ok(resp)
}

/// Parses the event filters every event list takes; unknown parameters are an error so a typo
/// never silently widens a query.
fn event_filter(
    state: &AppState,
    pairs: &[(String, String)],
    newest_first: bool,
) -> Result<(EventFilter, Option<String>)> {
    let now = state.clock.now_ns();
    let mut f = EventFilter {
        newest_first,
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut format = None;
    let max = state.services.query.max_rows();
    let mut range = TimeRange::default();
    for (k, v) in pairs {
        if take_range(&mut range, k, v, now)? {
            continue;
        }
        match k.as_str() {
            "type" => f.r#type = Some(v.clone()),
            "device_id" | "sensor_id" | "sensorId" => f.device_id = Some(v.clone()),
            "user_id" => f.user_id = Some(v.clone()),
            "source" => f.source = Some(v.clone()),
            "order" => {
                f.newest_first = match v.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(bad("`order`: use asc or desc")),
                }
            }
            "limit" => f.limit = whole("limit", v, max)?,
            "cursor" => f.cursor = Some(Cursor::parse(v)?),
            "format" => format = Some(v.clone()),
            other => match other
                .strip_prefix("property.")
                .or_else(|| other.strip_prefix("properties."))
            {
                Some(name) if !name.is_empty() => f.properties.push((name.to_string(), v.clone())),
                _ => {
                    return Err(unknown(
                        other,
                        "from, to, type, device_id, user_id, source, property.<name>, order, limit, cursor, format",
                    ));
                }
            },
        }
    }
    (f.from, f.to) = (range.from, range.to);
    Ok((f, format))
}

async fn list(
    state: &AppState,
    caller: &eddy_service::auth::Principal,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    newest_first: bool,
) -> Result<Response> {
    let (filter, format) = event_filter(state, pairs, newest_first)?;
    let format = negotiate(format.as_deref(), headers, FORMATS)?;
    let page = state.services.query.events(caller, filter).await?;
    render(page.events, page.next_cursor, format)
}

/// `GET /api/v1/events`: raw events, oldest first unless `order=desc`.
#[utoipa::path(get, path = "/api/v1/events", tag = "query", operation_id = "list_events", summary = "Raw events, oldest first", params(RangeParams, ("type" = Option<String>, Query, description = "Event type"), ("device_id" = Option<String>, Query, description = "Device (also `sensor_id`)"), ("user_id" = Option<String>, Query, description = "User"), ("source" = Option<String>, Query, description = "Source"), ("property.KEY" = Option<String>, Query, description = "Property equality (any KEY)"), ("order" = Option<String>, Query, pattern = "^(asc|desc)$", description = "`asc` (default) or `desc`"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 100000, description = "Page size (default 100; at most `--max-result-rows`, default 100000)"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"), ("format" = Option<String>, Query, pattern = "^(json|ndjson|csv)$", description = "`json` (default), `ndjson` or `csv` (or `Accept`)")), responses((status = 200, description = "Events; NDJSON or CSV when asked (the cursor then in `x-next-cursor`)", content((Page<StoredEvent> = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))), Errors))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response> {
    list(&state, &caller, &pairs, &headers, false).await
}

/// `GET /api/v1/events/recent`: the newest events first.
#[utoipa::path(get, path = "/api/v1/events/recent", tag = "query", operation_id = "recent_events", summary = "The newest events first", params(RangeParams, ("type" = Option<String>, Query, description = "Event type"), ("device_id" = Option<String>, Query, description = "Device (also `sensor_id`)"), ("user_id" = Option<String>, Query, description = "User"), ("source" = Option<String>, Query, description = "Source"), ("property.KEY" = Option<String>, Query, description = "Property equality (any KEY)"), ("order" = Option<String>, Query, pattern = "^(asc|desc)$", description = "`asc` (default) or `desc`"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 100000, description = "Page size (default 100; at most `--max-result-rows`, default 100000)"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"), ("format" = Option<String>, Query, pattern = "^(json|ndjson|csv)$", description = "`json` (default), `ndjson` or `csv` (or `Accept`)")), responses((status = 200, description = "Events, newest first; NDJSON or CSV when asked (the cursor then in `x-next-cursor`)", content((Page<StoredEvent> = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))), Errors))]
pub(crate) async fn recent_events(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response> {
    list(&state, &caller, &pairs, &headers, true).await
}

/// `GET /api/data/recent?limit=&sensor_id=`: the newest sensor readings, as a JSON array in the
/// shape sensor clients post them (`sensorId`, `value`, `timestamp`), plus all metrics.
#[utoipa::path(get, path = "/api/data/recent", tag = "query", operation_id = "recent_sensor_data", summary = "Newest sensor readings in the shape sensor clients post", params(("limit" = Option<usize>, Query, minimum = 1, maximum = 100000, description = "At most this many (default 100; at most `--max-result-rows`, default 100000)"), ("sensor_id" = Option<String>, Query, description = "One sensor")), responses((status = 200, description = "A JSON array of readings, newest first", body = Vec<eddy_service::query::Reading>), Errors))]
pub(crate) async fn recent_sensor_data(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let (filter, _) = event_filter(&state, &pairs, true)?;
    let rows = state
        .services
        .query
        .recent_readings(&caller, filter)
        .await?;
    Ok(Json(rows).into_response())
}

/// `GET /api/v1/devices`: device ids with first/last seen, event count and metric names,
/// ordered by id; `limit` (default 1000) and `cursor` page through them.
#[utoipa::path(get, path = "/api/v1/devices", tag = "query", operation_id = "list_devices", summary = "Devices with first/last seen, event count and metric names", params(("limit" = Option<usize>, Query, minimum = 1, maximum = 100000, description = "Page size (default 1000; at most `--max-result-rows`, default 100000)"), ("cursor" = Option<String>, Query, description = "Last id of the previous page")), responses((status = 200, description = "A page of devices, ordered by id", body = Page<eddy_service::query::DeviceSummary>), Errors))]
pub(crate) async fn list_devices(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let max = state.services.query.max_rows();
    let (mut limit, mut cursor) = (1000.min(max), None);
    for (k, v) in &pairs {
        match k.as_str() {
            "limit" => limit = whole("limit", v, max)?,
            "cursor" => cursor = Some(v.clone()),
            other => return Err(unknown(other, "limit, cursor")),
        }
    }
    let page = state.services.query.devices(&caller, cursor, limit).await?;
    Ok(Json(Page {
        data: page.devices,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// `GET /api/v1/devices/{id}/metrics?points=`: per metric, the latest value and the newest
/// `points` (default 20) samples, oldest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/metrics", tag = "query", operation_id = "device_metrics", summary = "Latest value and newest samples of each metric of a device", params(("id" = String, Path, description = "Device id"), ("points" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "Samples per metric (default 20)")), responses((status = 200, description = "Per metric: latest and points", body = eddy_service::query::DeviceMetrics), (status = 404, description = "No samples of this device", body = ErrorBody), Errors))]
pub(crate) async fn device_metrics(
    State(state): State<AppState>,
    Reader(caller): Reader,
    axum::extract::Path(device): axum::extract::Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let mut points = 20;
    for (k, v) in &pairs {
        match k.as_str() {
            "points" => points = whole("points", v, 10_000)?,
            other => return Err(unknown(other, "points")),
        }
    }
    let metrics = state
        .services
        .query
        .device_metrics(&caller, &device, points)
        .await?;
    Ok(Json(metrics).into_response())
}

/// `GET /api/v1/timeseries?metric=&device_id=&from=&to=&bucket=&agg=&group_by=&source=`: one row per
/// non-empty bucket (`{"data": [{"time", "<agg>": …}]}`), or per device with
/// `group_by=device_id` (`{"series": [{"device_id", "data"}]}`). Defaults: the last 24 hours,
/// 1-minute buckets, `avg`. Answered from rollups when they give the same answer (see
/// `eddy_service::query::QueryService::timeseries_from_rollups`), else from raw data; `source=raw` forces raw, and the
/// `x-eddy-source` header says which.
#[utoipa::path(get, path = "/api/v1/timeseries", tag = "query", operation_id = "timeseries", summary = "Buckets of one metric (from rollups when they give the raw answer)", params(("metric" = String, Query, min_length = 1, description = "Metric name"), RangeParams, ("device_id" = Option<String>, Query, description = "One device"), ("bucket" = Option<String>, Query, description = "Bucket width, e.g. 1m (default), 1h, 1d"), ("agg" = Option<String>, Query, pattern = "^(avg|sum|min|max|count|first|last|p50|p90|p95|p99)(,(avg|sum|min|max|count|first|last|p50|p90|p95|p99))*$", description = "Comma list of `avg` (default), `sum`, `min`, `max`, `count`, `first`, `last`, `p50`, `p90`, `p95`, `p99`"), ("group_by" = Option<String>, Query, pattern = "^device_id$", description = "`device_id`: one series per device"), ("source" = Option<String>, Query, pattern = "^(auto|raw)$", description = "`raw` forces raw data; `auto` (default) uses rollups when they give the raw answer")), responses((status = 200, description = "Buckets oldest first; `x-eddy-source` says rollups or raw", body = crate::openapi::TimeseriesBody, headers(("x-eddy-source" = String, description = "`rollups` or `raw`"))), Errors))]
pub(crate) async fn timeseries(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    use eddy_service::query::Agg;
    let now = state.clock.now_ns();
    let mut range = TimeRange::default();
    let mut q = TimeseriesQuery {
        metric: String::new(),
        device_id: None,
        from: 0,
        to: 0,
        bucket_secs: 60,
        aggs: vec![Agg::Avg],
        group_by_device: false,
    };
    let mut source = SourceChoice::Auto;
    for (k, v) in &pairs {
        if take_range(&mut range, k, v, now)? {
            continue;
        }
        match k.as_str() {
            "metric" => q.metric = v.clone(),
            "device_id" | "sensor_id" => q.device_id = Some(v.clone()),
            "bucket" => q.bucket_secs = bucket_secs(v, 86_400)?,
            "agg" => {
                q.aggs = v
                    .split(',')
                    .map(|a| Agg::parse(a.trim()))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(Domain::from)?
            }
            "group_by" => match v.as_str() {
                "device_id" => q.group_by_device = true,
                _ => return Err(bad("`group_by`: only device_id")),
            },
            "source" => match v.as_str() {
                "raw" => source = SourceChoice::Raw,
                "auto" => source = SourceChoice::Auto,
                _ => {
                    return Err(bad(
                        "`source`: auto (rollups when they give the same answer) or raw",
                    ));
                }
            },
            other => {
                return Err(unknown(
                    other,
                    "metric, device_id, from, to, bucket, agg, group_by, source",
                ));
            }
        }
    }
    (q.from, q.to) = range.resolve(now, DAY_NS)?;
    let answer = state.services.query.timeseries(&caller, q, source).await?;
    let source = answer.source;
    let mut resp = Json(answer).into_response();
    resp.headers_mut()
        .insert("x-eddy-source", HeaderValue::from_static(source.name()));
    Ok(resp)
}
