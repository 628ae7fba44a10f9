//! The HTTP routes. Ingestion routes (native and compatibility) all call
//! `eddy_service::ingest::IngestService::ingest`.

pub(crate) mod admin;
pub(crate) mod alerts;
pub(crate) mod analytics;
mod cached;
pub(crate) mod ingest;
pub(crate) mod live;
pub(crate) mod ops;
pub(crate) mod params;
pub(crate) mod query;
pub(crate) mod rollups;
pub(crate) mod sql;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use eddy_service::Error as Domain;

use crate::Result;

/// A JSON request body, or a 400 saying what is wrong with it.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Domain::invalid("invalid_body", format!("invalid JSON body: {e}")).into())
}

/// The whole body of a route that takes a small JSON document (funnel, retention, SQL, rules,
/// notes, tenants, keys), within axum's default limit of 2 MiB; over it Eddy's 413, not axum's
/// plain-text one.
pub(crate) struct SmallBody(pub(crate) axum::body::Bytes);

/// The largest [`SmallBody`] (axum's `DefaultBodyLimit`).
pub(crate) const SMALL_BODY_MAX: &str = "2 MiB";

impl<S: Send + Sync> axum::extract::FromRequest<S> for SmallBody {
    type Rejection = crate::Error;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Domain::TooLarge(format!("the body is over {SMALL_BODY_MAX}")).into())
            }
            Err(e) => {
                tracing::debug!(error = %e, "request body not read");
                Err(Domain::invalid("invalid_body", "the request body could not be read").into())
            }
        }
    }
}

/// The envelope of every list answer: `{"data": [...]}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ListOf<T> {
    pub(crate) data: Vec<T>,
}

/// A page of a list: `{"data": [...], "next_cursor": …}`; `next_cursor` (`null` on the last
/// page) is passed back as `cursor` for the next one.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    pub(crate) data: Vec<T>,
    pub(crate) next_cursor: Option<String>,
}

/// A list answer.
pub(crate) fn list<T: serde::Serialize>(data: Vec<T>) -> Response {
    axum::response::IntoResponse::into_response(axum::Json(ListOf { data }))
}

/// Every route with its OpenAPI entry: each handler is registered through `routes!`, which
/// reads its `#[utoipa::path]`, so the document cannot miss a route. Handlers of one path
/// (different methods) go in one `routes!`.
fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        // Native ingestion and reads.
        .routes(routes!(ingest::native, query::list_events))
        .routes(routes!(query::recent_events))
        .routes(routes!(query::recent_sensor_data))
        .routes(routes!(query::list_devices))
        .routes(routes!(query::device_metrics))
        .routes(routes!(query::timeseries))
        .routes(routes!(rollups::rollups))
        .routes(routes!(rollups::aggregates))
        .routes(routes!(sql::query))
        .routes(routes!(sql::tables))
        // Analytics.
        .routes(routes!(analytics::summary))
        .routes(routes!(analytics::overview))
        .routes(routes!(analytics::top))
        .routes(routes!(analytics::grouped_timeseries))
        .routes(routes!(analytics::user))
        .routes(routes!(analytics::funnel))
        .routes(routes!(analytics::retention))
        .routes(routes!(analytics::export))
        .routes(routes!(analytics::metrics_export))
        // Live feeds.
        .routes(routes!(live::sse))
        .routes(routes!(live::ws))
        .routes(routes!(live::ws_root))
        // Rules and alerts.
        .routes(routes!(alerts::list_rules, alerts::create_rule))
        .routes(routes!(
            alerts::get_rule,
            alerts::put_rule,
            alerts::patch_rule,
            alerts::delete_rule
        ))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::get_alert))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::resolve))
        // Compatibility routes onto the same code paths.
        .routes(routes!(ingest::sensor_data))
        .routes(routes!(ingest::click))
        .routes(routes!(ingest::telemetry))
        .routes(routes!(ingest::product_sync))
        .routes(routes!(ingest::product_async))
        .routes(routes!(ingest::product_batch))
        .routes(routes!(ingest::gateway))
        .routes(routes!(analytics::summary_compat))
        .routes(routes!(analytics::summary_compat_v1))
        .routes(routes!(analytics::click_counts))
        // Admin.
        .routes(routes!(admin::create_tenant, admin::list_tenants))
        .routes(routes!(
            admin::get_tenant,
            admin::update_tenant,
            admin::delete_tenant
        ))
        .routes(routes!(admin::create_key, admin::list_keys))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(admin::whoami))
        // Operations.
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::stats))
        .routes(routes!(ops::lag))
        .routes(routes!(ops::openapi))
}

/// The OpenAPI document of [`router`] (built once).
pub(crate) fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| documented().into_openapi())
}

/// The whole HTTP API.
pub(crate) fn router(state: AppState) -> Router {
    let api: Router<AppState> = documented().into();
    let api = api
        .method_not_allowed_fallback(ops::method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), cached::layer))
        .merge(crate::dashboard::router())
        .fallback(ops::not_found)
        .with_state(state);
    api.layer(middleware::from_fn(track_metrics))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("http", method = %req.method(), uri = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("eddy_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("eddy_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
