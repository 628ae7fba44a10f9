//! The query cache as a route layer: which routes it serves, how a request becomes its key (the
//! caller's tenant from a valid `read` key, never the key itself), and the `x-eddy-cache`
//! header. The cache itself is [`crate::cache::QueryCache`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eddy_service::Error as Domain;
use eddy_service::auth::Scope;

use crate::Error;
use crate::auth::{Caller, presented_secret};
use crate::cache::{Cached, key};
use crate::state::AppState;

/// Routes whose answers are cached, with their method (any other method of the path is not
/// theirs: it gets its 405 untouched).
const CACHED_ROUTES: [(Method, &str); 14] = [
    (Method::GET, "/api/v1/timeseries"),
    (Method::GET, "/api/v1/rollups"),
    (Method::GET, "/api/v1/analytics/aggregates"),
    (Method::POST, "/api/v1/query"),
    (Method::GET, "/api/v1/analytics/summary"),
    (Method::GET, "/analytics/summary"),
    (Method::GET, "/v1/analytics/summary"),
    (Method::GET, "/api/v1/analytics/top"),
    (Method::GET, "/analytics/events"),
    (Method::GET, "/api/v1/analytics/timeseries"),
    (Method::GET, "/api/v1/analytics/users/{user_id}"),
    (Method::POST, "/api/v1/analytics/funnel"),
    (Method::POST, "/api/v1/analytics/retention"),
    (Method::GET, "/api/v1/metrics/export"),
];

/// Largest request body read for a cache key (SQL statements are at most 64 KiB).
const MAX_KEY_BODY: usize = 128 * 1024;

fn tagged(mut resp: Response, hit: bool) -> Response {
    resp.headers_mut().insert(
        "x-eddy-cache",
        HeaderValue::from_static(if hit { "hit" } else { "miss" }),
    );
    resp
}

/// The middleware: serves a fresh cached answer, or runs the handler and keeps its `200`.
pub(crate) async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cache) = state.query_cache.as_ref() else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if !CACHED_ROUTES
        .iter()
        .any(|(m, r)| *m == req.method() && *r == route)
    {
        return next.run(req).await;
    }
    let caller = presented_secret(req.headers())
        .filter(|s| !s.is_empty())
        .and_then(|s| Caller::authenticate(&state, Some(s)).ok());
    let Some(tenant) = caller
        .as_ref()
        .and_then(|c| c.require(Scope::Read).ok())
        .map(|p| p.tenant_id.clone())
    else {
        // Let the handler answer (401/403) what the cache must not.
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_KEY_BODY).await else {
        return Error::from(Domain::TooLarge(format!(
            "request body is larger than the limit of {MAX_KEY_BODY} bytes for this route"
        )))
        .into_response();
    };
    // The path, not the route: `/users/{user_id}` is one route of many answers.
    let k = key(
        &tenant,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &bytes,
    );
    if let Some(hit) = cache.entries.get(&k) {
        metrics::counter!("eddy_query_cache_total", "result" => "hit").increment(1);
        let mut resp = hit.body.clone().into_response();
        if let Some(ct) = &hit.content_type {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        if let Some(src) = &hit.source {
            resp.headers_mut().insert("x-eddy-source", src.clone());
        }
        return tagged(resp, true);
    }
    metrics::counter!("eddy_query_cache_total", "result" => "miss").increment(1);
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if resp.status() != StatusCode::OK {
        return tagged(resp, false);
    }
    let (parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        // The answer's body failed while it was produced (a streamed answer's error).
        Err(e) => {
            return Error::from(Domain::Internal(format!(
                "an answer of {route} failed while it was read for the cache: {e}"
            )))
            .into_response();
        }
    };
    cache.entries.insert(
        k,
        Arc::new(Cached {
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            source: parts.headers.get("x-eddy-source").cloned(),
            body: body.clone(),
        }),
    );
    tagged(Response::from_parts(parts, Body::from(body)), false)
}
