//! Settings of the server. The binary fills this from flags, `EDDY_…` variables and the TOML
//! file; defaults here work on a laptop.

use std::path::PathBuf;
use std::time::Duration;

use eddy_model::Limits;

/// Everything the server needs to know at start-up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Operator-chosen admin secret (`EDDY_ADMIN_KEY`), at least 32 characters.
    pub admin_key: Option<String>,
    /// Per-event limits and the allowed future skew.
    pub limits: Limits,
    /// Largest request body accepted, as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression.
    pub max_decompressed_bytes: usize,
    /// Budget for request bodies being processed at once (after decompression); a request
    /// that does not fit is answered 503 with `Retry-After`. JSON parsing needs a small
    /// multiple of this in memory.
    pub max_inflight_bytes: usize,
    /// Most events per request.
    pub max_batch_events: usize,
    /// Window in which a repeated client `event_id` is a duplicate.
    pub dedup_window: Duration,
    /// Most ids the dedup index holds.
    pub dedup_max_entries: usize,
    /// Retention of tenants that do not set their own (0 = forever).
    pub default_retention: Duration,
    /// Ingest quota of tenants that do not set their own, events/s (0 = unlimited).
    pub default_events_per_sec: u32,
    /// Ingest answers 503 while the store or the stream processor is further behind the log
    /// than this (the age of the oldest record it has not applied); zero turns it off.
    pub max_pipeline_lag: Duration,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
    /// Bound of the WAL append queue.
    pub wal_queue_bytes: usize,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Browser origins (`https://dash.example.com`) allowed to open WebSockets besides the
    /// server's own; `*` allows any.
    pub ws_allowed_origins: Vec<String>,
    /// Webhook delivery: per-attempt timeout and attempts before a notification is
    /// dead-lettered.
    pub webhook_timeout: Duration,
    pub webhook_attempts: u32,
    /// How old a cached query answer may be (0 = no cache), and the cache's size bound.
    pub query_cache_staleness: Duration,
    pub query_cache_bytes: u64,
}

impl ServerConfig {
    /// Defaults for a data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            data_dir,
            admin_key: None,
            limits: Limits::default(),
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
            max_inflight_bytes: 256 << 20,
            max_batch_events: 10_000,
            dedup_window: Duration::from_secs(24 * 3600),
            dedup_max_entries: 2_000_000,
            default_retention: Duration::from_secs(30 * 86_400),
            default_events_per_sec: 0,
            max_pipeline_lag: Duration::from_secs(10),
            wal_segment_bytes: 64 << 20,
            wal_queue_bytes: 256 << 20,
            shutdown_grace: Duration::from_secs(30),
            ws_allowed_origins: Vec::new(),
            webhook_timeout: Duration::from_secs(5),
            webhook_attempts: 6,
            query_cache_staleness: Duration::from_secs(1),
            query_cache_bytes: 64 << 20,
        }
    }
}
