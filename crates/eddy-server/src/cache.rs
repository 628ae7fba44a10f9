//! The query cache: answers of the read routes dashboards repeat (`/api/v1/timeseries`,
//! `/api/v1/rollups`, `/api/v1/analytics/aggregates`, `POST /api/v1/query`) kept for at most
//! `query_cache_staleness` (default 1 s; 0 turns it off), so a cached answer is never older
//! than that.
//!
//! The key is the caller's tenant, the route, the sorted query parameters, `Accept` and the
//! body — never the key itself, and only for a caller whose key is valid and has `read`: an
//! invalid, revoked or write-only key goes to the handler and gets its 401/403. Only `200`
//! answers are kept; memory is bounded by their total size (`query_cache_bytes`). Counters:
//! `eddy_query_cache_total{result="hit"|"miss"}`; answers carry `x-eddy-cache: hit|miss`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};

/// One cached answer.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) source: Option<HeaderValue>,
    pub(crate) body: Bytes,
}

/// Answers by key, each for at most the staleness.
#[derive(Debug, Clone)]
pub struct QueryCache {
    pub(crate) entries: moka::sync::Cache<u128, Arc<Cached>>,
}

impl QueryCache {
    /// `None` when `staleness` is zero (no caching).
    pub fn new(staleness: Duration, max_bytes: u64) -> Option<Self> {
        (!staleness.is_zero()).then(|| Self {
            entries: moka::sync::Cache::builder()
                .time_to_live(staleness)
                .max_capacity(max_bytes)
                .weigher(|_, v: &Arc<Cached>| {
                    u32::try_from(v.body.len().saturating_add(256)).unwrap_or(u32::MAX)
                })
                .build(),
        })
    }
}

pub(crate) fn key(
    tenant: &str,
    route: &str,
    uri_query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> u128 {
    let mut params: Vec<&str> = uri_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    params.sort_unstable();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [tenant.as_bytes(), route.as_bytes(), accept.as_bytes()] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    for p in params {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.update(&(body.len() as u64).to_le_bytes());
    h.update(body);
    h.digest128()
}
