//! `GET /api/v1/rollups`: the stream processor's event-time rollups, read from its state
//! (tenant-scoped, `read` scope).
//!
//! - `metric=NAME[&device_id=ID]`: per (device, window) `count, sum, min, max, avg, first,
//!   last` (exact) and `p50, p90, p95, p99` (DDSketch, ±1% relative);
//! - `dimension=type|page_url|source[&value=V]`: per (value, window) `count` (exact) and
//!   `distinct_users` (HyperLogLog++);
//! - `resolution=1m|1h|1d` (default 1m), `from`/`to` (default the last 24 h; windows starting
//!   in `[from, to)`, `from` rounded down to its window).
//!
//! Every row says whether its window is `final` (closed by the watermark) or still open, and
//! whether it is `complete`. A window that missed late events (they arrived after it closed:
//! stored raw, counted in `eddy_stream_late_total`, not applied) is **re-aggregated from the
//! raw store** when asked for: for `metric` rows, one raw time-series query per metric over the
//! span of such windows (bucket = the resolution, per device) replaces their aggregates (and
//! adds series whose every event was late), marked `"corrected": true`; `dimension` rows of
//! such windows are recounted from raw events the same way (exact count and distinct users).

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use eddy_stream::{Devices, Dimension, Resolution, Series};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::openapi::{Errors, RangeParams};
use crate::routes::query::{parse_time_param, unknown};
use crate::state::AppState;
use crate::{Error, Result};
use eddy_service::Error as Domain;
use eddy_service::auth::Scope;

fn bad(message: impl Into<String>) -> Error {
    Domain::invalid("invalid_parameter", message).into()
}

/// `GET /api/v1/rollups` (1-minute windows unless `resolution` says otherwise).
#[utoipa::path(get, path = "/api/v1/rollups", tag = "rollups", operation_id = "rollups", summary = "Rollup windows of a metric or a dimension (1-minute by default)", params(("metric" = Option<String>, Query, description = "Metric"), ("device_id" = Option<String>, Query, description = "Device"), ("dimension" = Option<String>, Query, description = "type, page_url or source"), ("value" = Option<String>, Query, description = "One value of the dimension"), ("resolution" = Option<String>, Query, description = "1m, 1h or 1d"), RangeParams), responses((status = 200, description = "`{\"resolution\", \"watermark\", \"data\": [window]}`", body = Object), Errors))]
pub(crate) async fn rollups(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    answer(&state, &caller, &pairs, Resolution::Minute).await
}

/// `GET /api/v1/analytics/aggregates`: what device-telemetry clients ask for — the same rollup
/// rows, hourly unless `resolution` says otherwise; without `metric`, every metric (of the
/// device, with `device_id`).
#[utoipa::path(get, path = "/api/v1/analytics/aggregates", tag = "rollups", operation_id = "aggregates", summary = "Rollup rows, hourly by default (device-telemetry clients)", params(("metric" = Option<String>, Query, description = "Metric"), ("device_id" = Option<String>, Query, description = "Device"), ("dimension" = Option<String>, Query, description = "type, page_url or source"), ("value" = Option<String>, Query, description = "One value of the dimension"), ("resolution" = Option<String>, Query, description = "1m, 1h or 1d"), RangeParams), responses((status = 200, description = "As /api/v1/rollups", body = Object), Errors))]
pub(crate) async fn aggregates(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    answer(&state, &caller, &pairs, Resolution::Hour).await
}

async fn answer(
    state: &AppState,
    caller: &Caller,
    pairs: &[(String, String)],
    default_resolution: Resolution,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let now = state.clock.now_ns();
    let (mut from, mut to) = (now.saturating_sub(86_400 * 1_000_000_000), now);
    let mut resolution = default_resolution;
    let (mut metric, mut device, mut dimension, mut value) = (None, None, None, None);
    for (k, v) in pairs {
        match k.as_str() {
            "metric" => metric = Some(v.clone()),
            "device_id" | "sensor_id" => device = Some(v.clone()),
            "dimension" => {
                dimension = Some(Dimension::parse(v).ok_or_else(|| {
                    bad(format!("`dimension` `{v}`: use type, page_url or source"))
                })?)
            }
            "value" => value = Some(v.clone()),
            "resolution" => {
                resolution = Resolution::parse(v)
                    .ok_or_else(|| bad(format!("`resolution` `{v}`: use 1m, 1h or 1d")))?
            }
            "from" => from = parse_time_param("from", v, now)?,
            "to" => to = parse_time_param("to", v, now)?,
            other => {
                return Err(unknown(
                    other,
                    "metric, device_id, dimension, value, resolution, from, to",
                ));
            }
        }
    }
    if from >= to {
        return Err(bad("`from` must be before `to`"));
    }
    let from = resolution.window_start(from);
    let lateness = state.stream.config().lateness_ns();
    let max_rows = state.store.config().max_result_rows;
    let rfc = eddy_model::time::format_rfc3339;
    let (watermark, rows) = match (metric, dimension) {
        (metric, None) => {
            if value.is_some() {
                return Err(bad("`value` goes with `dimension`, not `metric`"));
            }
            // Without a metric, the names come from the all-devices series: read it too.
            let series = Series::Metrics {
                metric: metric.clone(),
                devices: match (&device, &metric) {
                    (Some(d), _) => Devices::One(d.clone()),
                    (None, Some(_)) => Devices::Each,
                    (None, None) => Devices::Any,
                },
            };
            let (watermark, mut rows, metrics, incomplete) = state
                .stream
                .read_range(&p.tenant_id, (resolution, from, to), series, |r| {
                    let incomplete: BTreeSet<i64> =
                        r.incomplete_windows(resolution, from, to).collect();
                    let metrics: Vec<&str> = match &metric {
                        Some(m) => vec![m.as_str()],
                        None => r.metric_names(device.as_deref()),
                    };
                    let rows: Vec<Value> = metrics
                        .iter()
                        .copied()
                        .flat_map(|metric| {
                            r.metric_windows(resolution, metric, device.as_deref(), from, to)
                                .map(move |(device, start, a)| (metric, device, start, a))
                        })
                        .take(max_rows + 1)
                        .map(|(metric, device, start, a)| {
                            json!({
                                "time": rfc(start),
                                "device_id": (!device.is_empty()).then_some(device),
                                "metric": metric,
                                "count": a.count, "sum": a.sum, "min": a.min, "max": a.max,
                                "avg": a.avg(), "first": a.first.value, "last": a.last.value,
                                "p50": a.quantile(0.5), "p90": a.quantile(0.9),
                                "p95": a.quantile(0.95), "p99": a.quantile(0.99),
                                "final": r.closed(resolution, start, lateness),
                                "complete": !incomplete.contains(&start),
                            })
                        })
                        .collect();
                    let metrics: Vec<String> = metrics.into_iter().map(str::to_string).collect();
                    (r.watermark(lateness), rows, metrics, incomplete)
                })
                .await?;
            if !incomplete.is_empty() {
                let ctx = Correction {
                    tenant: &p.tenant_id,
                    resolution,
                    device: device.as_deref(),
                    windows: &incomplete,
                };
                for m in &metrics {
                    correct_from_raw(state, &ctx, m, &mut rows).await?;
                }
                rows.sort_by(|a, b| {
                    let key = |v: &Value| {
                        (
                            v["metric"].as_str().unwrap_or("").to_string(),
                            v["device_id"].as_str().unwrap_or("").to_string(),
                            v["time"].as_str().unwrap_or("").to_string(),
                        )
                    };
                    key(a).cmp(&key(b))
                });
            }
            (watermark, rows)
        }
        (None, Some(dim)) => {
            if device.is_some() {
                return Err(bad("`device_id` goes with `metric`, not `dimension`"));
            }
            let (watermark, mut rows, incomplete) = state
                .stream
                .read_range(
                    &p.tenant_id,
                    (resolution, from, to),
                    Series::Dimension(dim),
                    |r| {
                        let incomplete: BTreeSet<i64> =
                            r.incomplete_windows(resolution, from, to).collect();
                        let rows: Vec<Value> = r
                            .count_windows(resolution, dim, value.as_deref(), from, to)
                            .take(max_rows + 1)
                            .map(|(v, start, a)| {
                                json!({
                                    "time": rfc(start),
                                    "dimension": dim.name(),
                                    "value": v,
                                    "count": a.count,
                                    "distinct_users": a.distinct_users(),
                                    "final": r.closed(resolution, start, lateness),
                                    "complete": !incomplete.contains(&start),
                                })
                            })
                            .collect();
                        (r.watermark(lateness), rows, incomplete)
                    },
                )
                .await?;
            if let (Some(first), Some(last)) = (incomplete.first(), incomplete.last()) {
                let q = eddy_store::query::DimensionQuery {
                    dimension: dim.name().to_string(),
                    value: value.clone(),
                    from: *first,
                    to: last.saturating_add(resolution.nanos()),
                    bucket_secs: u64::try_from(resolution.nanos() / 1_000_000_000).unwrap_or(60),
                };
                let raw = state.query.dimension_counts(&p.tenant_id, q).await?;
                let mut index: HashMap<(String, String), usize> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let key = (
                            r["value"].as_str().unwrap_or("").to_string(),
                            r["time"].as_str().unwrap_or("").to_string(),
                        );
                        (key, i)
                    })
                    .collect();
                for c in raw.into_iter().filter(|c| incomplete.contains(&c.bucket)) {
                    let row = json!({
                        "time": rfc(c.bucket), "dimension": dim.name(), "value": c.value,
                        "count": c.count, "distinct_users": c.distinct_users,
                        "final": true, "complete": true, "corrected": true,
                    });
                    match index.get(&(c.value.clone(), rfc(c.bucket))) {
                        Some(&i) => rows[i] = row,
                        None => {
                            index.insert((c.value, rfc(c.bucket)), rows.len());
                            rows.push(row);
                        }
                    }
                }
                rows.sort_by(|a, b| {
                    let key = |v: &Value| {
                        (
                            v["value"].as_str().unwrap_or("").to_string(),
                            v["time"].as_str().unwrap_or("").to_string(),
                        )
                    };
                    key(a).cmp(&key(b))
                });
            }
            (watermark, rows)
        }
        (Some(_), Some(_)) => return Err(bad("give `metric` or `dimension`, not both")),
    };
    if rows.len() > max_rows {
        return Err(Domain::invalid(
            "result_too_large",
            format!(
                "more than {max_rows} rollup rows; narrow the range, the resolution or the series"
            ),
        )
        .into());
    }
    Ok(Json(json!({
        "resolution": resolution.name(),
        "watermark": watermark.map(rfc),
        "data": rows,
    }))
    .into_response())
}

/// Which windows of a rollups answer are re-aggregated from raw data.
struct Correction<'a> {
    tenant: &'a str,
    resolution: Resolution,
    device: Option<&'a str>,
    windows: &'a BTreeSet<i64>,
}

/// Re-aggregates `metric`'s rows of `c.windows` from the raw store: replaces their aggregates
/// and adds rows for series the rollups lack there (all their events were late).
async fn correct_from_raw(
    state: &AppState,
    c: &Correction<'_>,
    metric: &str,
    rows: &mut Vec<Value>,
) -> Result<()> {
    use eddy_store::timeseries::{Agg, TimeseriesQuery};
    let (Some(first), Some(last)) = (c.windows.first(), c.windows.last()) else {
        return Ok(());
    };
    let r = c.resolution;
    let q = TimeseriesQuery {
        metric: metric.to_string(),
        device_id: c.device.map(str::to_string),
        from: *first,
        to: last.saturating_add(r.nanos()),
        bucket_secs: u64::try_from(r.nanos() / 1_000_000_000).unwrap_or(60),
        aggs: vec![
            Agg::Count,
            Agg::Sum,
            Agg::Min,
            Agg::Max,
            Agg::Avg,
            Agg::First,
            Agg::Last,
            Agg::P(50),
            Agg::P(90),
            Agg::P(95),
            Agg::P(99),
        ],
        group_by_device: true,
    };
    let raw = state.query.timeseries(c.tenant, q).await?;
    let parse = |t: &str| eddy_model::time::parse_time_str(t).ok();
    let mut index: HashMap<(String, i64), usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if row["metric"] == metric
            && let Some(t) = row["time"].as_str().and_then(parse)
        {
            let dev = row["device_id"].as_str().unwrap_or("").to_string();
            index.insert((dev, t), i);
        }
    }
    let empty = Vec::new();
    for series in raw["series"].as_array().unwrap_or(&empty) {
        let dev = series["device_id"].as_str().unwrap_or("");
        for point in series["data"].as_array().unwrap_or(&empty) {
            let Some(t) = point["time"].as_str().and_then(parse) else {
                continue;
            };
            if !c.windows.contains(&t) {
                continue;
            }
            let mut row = json!({
                "time": eddy_model::time::format_rfc3339(t),
                "device_id": (!dev.is_empty()).then_some(dev),
                "metric": metric,
                "final": true,
                "complete": true,
                "corrected": true,
            });
            for k in [
                "count", "sum", "min", "max", "avg", "first", "last", "p50", "p90", "p95", "p99",
            ] {
                row[k] = point[k].clone();
            }
            match index.get(&(dev.to_string(), t)) {
                Some(&i) => rows[i] = row,
                None => rows.push(row),
            }
        }
    }
    Ok(())
}

/// The time-series fast path: answers `q` from rollups when that gives the raw path's answer —
/// `None` sends it to raw data. Conditions: the bucket is a rollup resolution (1m, 1h, 1d); the
/// rollups have applied at least what the store shows; no window in the range missed a late
/// event or left memory; and the windows cut by `from` / `to` hold no sample outside the range
/// (checked per series with the window's first and last sample times). Every bucket is one
/// rollup window (all devices together have their own series), so exact aggregates equal the
/// raw path's (sums up to float addition order) and percentiles are exact up to 64 samples per
/// bucket, else within the sketch's 1%.
pub(crate) async fn timeseries_from_rollups(
    state: &AppState,
    tenant: &str,
    q: &eddy_store::timeseries::TimeseriesQuery,
) -> Result<Option<Value>> {
    use eddy_store::timeseries::Agg;
    let Some(r) = Resolution::ALL
        .into_iter()
        .find(|r| r.nanos() as u128 == u128::from(q.bucket_secs) * 1_000_000_000)
    else {
        return Ok(None);
    };
    if state.stream.applied_offset() < state.store.applied_offset() {
        return Ok(None);
    }
    let from = r.window_start(q.from);
    state
        .stream
        .read_range(tenant, (r, from, q.to), Series::metric(
                &q.metric,
                match (&q.device_id, q.group_by_device) {
                    (Some(d), _) => Devices::One(d.clone()),
                    (None, true) => Devices::Each,
                    (None, false) => Devices::Together,
                },
            ), |roll| {
            if !roll.complete(r, from, q.to) {
                return Ok(None);
            }
            // One window per bucket: all devices together have their own rollup series, and a
            // device filter or group_by reads per-device windows.
            let windows: Vec<(&str, i64, &eddy_stream::MetricAgg)> =
                if q.device_id.is_none() && !q.group_by_device {
                    roll.all_devices_windows(r, &q.metric, from, q.to)
                        .map(|(start, a)| ("", start, a))
                        .collect()
                } else {
                    roll.metric_windows(r, &q.metric, q.device_id.as_deref(), from, q.to)
                        .collect()
                };
            for (_, start, agg) in &windows {
                let cut_at_from = *start < q.from && agg.first.time < q.from;
                let cut_at_to = start.saturating_add(r.nanos()) > q.to && agg.last.time >= q.to;
                if cut_at_from || cut_at_to {
                    return Ok(None);
                }
            }
            if windows.len() > state.store.config().max_result_rows {
                return Err(Domain::invalid(
                    "result_too_large",
                    format!(
                        "more than {} rows; narrow the range or widen the bucket",
                        state.store.config().max_result_rows
                    ),
                ).into());
            }
            let mut series: Vec<(&str, Vec<Value>)> = Vec::new();
            for (device, start, a) in windows {
                let mut row = serde_json::Map::new();
                row.insert(
                    "time".into(),
                    eddy_model::time::format_rfc3339(start).into(),
                );
                for agg in &q.aggs {
                    let v = match agg {
                        Agg::Count => json!(a.count),
                        Agg::Sum => json!(a.sum),
                        Agg::Min => json!(a.min),
                        Agg::Max => json!(a.max),
                        Agg::Avg => json!(a.avg()),
                        Agg::First => json!(a.first.value),
                        Agg::Last => json!(a.last.value),
                        Agg::P(p) => json!(a.quantile(f64::from(*p) / 100.0)),
                    };
                    row.insert(agg.name(), v);
                }
                match series.last_mut() {
                    Some((d, rows)) if *d == device => rows.push(Value::Object(row)),
                    _ => series.push((device, vec![Value::Object(row)])),
                }
            }
            Ok(Some(if q.group_by_device {
                json!({"series": series.into_iter().map(|(d, data)| json!({
                "device_id": (!d.is_empty()).then_some(d), "data": data,
            })).collect::<Vec<_>>()})
            } else {
                json!({"data": series.into_iter().flat_map(|(_, rows)| rows).collect::<Vec<_>>()})
            }))
        })
        .await?
}
