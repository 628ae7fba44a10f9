//! Shared state of the server, held behind one `Arc` and handed to every handler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eddy_log::Log;
use eddy_model::Clock;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::catalog::{AuthProvider, Catalog};
use crate::config::ServerConfig;
use crate::dedup::Dedup;
use crate::quota::Quotas;

/// Everything handlers share.
#[derive(Debug)]
pub struct AppInner {
    pub config: ServerConfig,
    pub log: Arc<dyn Log>,
    /// The embedded store, for its operational state (lag, stats, backpressure).
    pub store: Arc<eddy_store::EmbeddedStore>,
    /// The store seam queries go through.
    pub query: Arc<dyn eddy_store::Store>,
    /// The stream processor: rollups (and, later, alerts and live feeds).
    pub stream: Arc<eddy_stream::Processor>,
    pub catalog: Arc<Catalog>,
    pub auth: Arc<dyn AuthProvider>,
    pub dedup: Dedup,
    pub quotas: Quotas,
    pub clock: Arc<dyn Clock>,
    pub stats: TenantStats,
    pub prometheus: PrometheusHandle,
    /// Permits = bytes of request bodies that may be in memory at once.
    pub inflight: Arc<tokio::sync::Semaphore>,
    pub started: Instant,
    /// Recent answers of the read routes dashboards repeat (`None`: caching off).
    pub query_cache: Option<crate::cache::QueryCache>,
}

/// Cheap-to-clone handle on [`AppInner`].
pub type AppState = Arc<AppInner>;

/// Ingest counters per tenant since the process started.
#[derive(Debug, Default)]
pub struct TenantStats {
    map: Mutex<HashMap<String, Arc<Counters>>>,
}

/// One tenant's counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub deduplicated: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub requests: u64,
    pub events_accepted: u64,
    pub events_rejected: u64,
    pub events_deduplicated: u64,
    pub requests_rate_limited: u64,
}

impl TenantStats {
    /// The counters of a tenant (created on first use).
    pub fn get(&self, tenant: &str) -> Arc<Counters> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(tenant.to_string()).or_default().clone()
    }

    /// Forgets a tenant.
    pub fn drop_tenant(&self, tenant: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }
}

impl Counters {
    /// A consistent-enough snapshot for reporting.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            events_accepted: self.accepted.load(Ordering::Relaxed),
            events_rejected: self.rejected.load(Ordering::Relaxed),
            events_deduplicated: self.deduplicated.load(Ordering::Relaxed),
            requests_rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}
