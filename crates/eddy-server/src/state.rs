//! Shared state of the HTTP front end, held behind one `Arc` and handed to every handler.

use std::sync::Arc;

use eddy_model::Clock;
use eddy_service::Services;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::ServerConfig;

/// Everything handlers share.
#[derive(Debug)]
pub struct AppInner {
    pub config: ServerConfig,
    /// The application layer: what handlers call.
    pub services: Services,
    pub clock: Arc<dyn Clock>,
    pub prometheus: PrometheusHandle,
    /// Permits = bytes of request bodies that may be in memory at once.
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// Recent answers of the read routes dashboards repeat (`None`: caching off).
    pub query_cache: Option<crate::cache::QueryCache>,
}

/// Cheap-to-clone handle on [`AppInner`].
pub type AppState = Arc<AppInner>;
