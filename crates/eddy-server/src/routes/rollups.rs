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
//! whether it is `complete`; windows that missed late events are re-aggregated from raw data
//! and say `"corrected": true` (`eddy_service::query::QueryService::rollups`).

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use eddy_service::query::{Dimension, Resolution, RollupTarget, RollupsQuery};

use crate::Result;
use crate::auth::Reader;
use crate::openapi::{Errors, RangeParams};
use crate::routes::params::{bad, take_range, unknown};
use crate::state::AppState;
use eddy_service::range::{DAY_NS, TimeRange};

/// `GET /api/v1/rollups` (1-minute windows unless `resolution` says otherwise).
#[utoipa::path(get, path = "/api/v1/rollups", tag = "rollups", operation_id = "rollups", summary = "Rollup windows of a metric or a dimension (1-minute by default)", params(("metric" = Option<String>, Query, description = "Metric"), ("device_id" = Option<String>, Query, description = "Device"), ("dimension" = Option<String>, Query, pattern = "^(type|page_url|source)$", description = "`type`, `page_url` or `source`"), ("value" = Option<String>, Query, description = "One value of the dimension"), ("resolution" = Option<String>, Query, pattern = "^(1m|1h|1d)$", description = "`1m`, `1h` or `1d`"), RangeParams), responses((status = 200, description = "The resolution, the watermark (windows before it are final) and the windows, oldest first", body = eddy_service::query::RollupsAnswer), Errors))]
pub(crate) async fn rollups(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    answer(&state, &caller, &pairs, Resolution::Minute).await
}

/// `GET /api/v1/analytics/aggregates`: what device-telemetry clients ask for — the same rollup
/// rows, hourly unless `resolution` says otherwise; without `metric`, every metric (of the
/// device, with `device_id`).
#[utoipa::path(get, path = "/api/v1/analytics/aggregates", tag = "rollups", operation_id = "aggregates", summary = "Rollup rows, hourly by default (device-telemetry clients)", params(("metric" = Option<String>, Query, description = "Metric"), ("device_id" = Option<String>, Query, description = "Device"), ("dimension" = Option<String>, Query, pattern = "^(type|page_url|source)$", description = "`type`, `page_url` or `source`"), ("value" = Option<String>, Query, description = "One value of the dimension"), ("resolution" = Option<String>, Query, pattern = "^(1m|1h|1d)$", description = "`1m`, `1h` or `1d`"), RangeParams), responses((status = 200, description = "The resolution, the watermark (windows before it are final) and the windows, oldest first", body = eddy_service::query::RollupsAnswer), Errors))]
pub(crate) async fn aggregates(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    answer(&state, &caller, &pairs, Resolution::Hour).await
}

async fn answer(
    state: &AppState,
    caller: &eddy_service::auth::Principal,
    pairs: &[(String, String)],
    default_resolution: Resolution,
) -> Result<Response> {
    let now = state.clock.now_ns();
    let mut range = TimeRange::default();
    let mut resolution = default_resolution;
    let (mut metric, mut device, mut dimension, mut value) = (None, None, None, None);
    for (k, v) in pairs {
        if take_range(&mut range, k, v, now)? {
            continue;
        }
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
            other => {
                return Err(unknown(
                    other,
                    "metric, device_id, dimension, value, resolution, from, to",
                ));
            }
        }
    }
    let target = match (metric, dimension) {
        (metric, None) => {
            if value.is_some() {
                return Err(bad("`value` goes with `dimension`, not `metric`"));
            }
            RollupTarget::Metric {
                metric,
                device_id: device,
            }
        }
        (None, Some(dimension)) => {
            if device.is_some() {
                return Err(bad("`device_id` goes with `metric`, not `dimension`"));
            }
            RollupTarget::Dimension { dimension, value }
        }
        (Some(_), Some(_)) => return Err(bad("give `metric` or `dimension`, not both")),
    };
    let (from, to) = range.resolve(now, DAY_NS)?;
    let q = RollupsQuery {
        resolution,
        from,
        to,
        target,
    };
    Ok(Json(state.services.query.rollups(caller, q).await?).into_response())
}
