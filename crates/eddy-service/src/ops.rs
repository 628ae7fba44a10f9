//! Operations: liveness, readiness, per-tenant stats, consumer lag and the gauges read rather
//! than pushed. The pipeline's progress comes through the [`PipelineStatus`] seam, so a node
//! without a local store or processor answers with what it has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_log::{Log, LogHealth};
use serde::Serialize;

use crate::Result;
use crate::auth::{Principal, Scope};
use crate::catalog::Catalog;
use crate::dedup::DedupIndex;
use crate::stats::{CountersSnapshot, TenantStats};

/// Progress of the log's consumers: the store and the stream processor.
pub trait PipelineStatus: Send + Sync + std::fmt::Debug {
    /// The store: what queries see and what is persisted.
    fn store(&self) -> StoreStatus;
    /// The offset below which the stream processor has applied everything.
    fn stream_applied_offset(&self) -> u64;
    /// The offset below which queries see every record (cheaper than [`Self::store`]: read
    /// on every time-series request).
    fn store_applied_offset(&self) -> u64 {
        self.store().applied_offset
    }
}

/// The store's progress and size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreStatus {
    /// Queries see every record below it.
    pub applied_offset: u64,
    /// Everything below it is in Parquet files (a restart replays from here).
    pub persisted_offset: u64,
    pub buffered_bytes: usize,
    pub files: usize,
    pub file_bytes: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`: the process answers.
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_seconds: u64,
}

/// `GET /ready`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// Whether the log acknowledges appends.
    #[serde(skip)]
    pub ready: bool,
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok`, `failed` or `closed`.
    pub log: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The log's extent and queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogPosition {
    pub start_offset: u64,
    pub end_offset: u64,
    pub queued_bytes: usize,
}

/// `GET /stats`: the caller's tenant's ingest counters since start, and the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub tenant_id: String,
    pub since_start: CountersSnapshot,
    pub uptime_seconds: u64,
    pub log: LogPosition,
    pub store: StoreStatus,
}

/// One log consumer's committed position.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsumerLag {
    pub name: String,
    pub next_offset: u64,
    pub lag: u64,
}

/// The store's visible and persisted progress behind the log end.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreLag {
    /// Queries see everything below it.
    pub applied_offset: u64,
    /// The committed offset: moves only when buffers are persisted.
    pub persisted_offset: u64,
    /// Records (a request's events are one record) not yet visible to queries.
    pub lag: u64,
    /// How long ago the oldest record queries do not see yet was appended, ms (0: caught up).
    pub behind_ms: u64,
}

/// The processor's progress behind the log end.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamLag {
    /// Rollups reflect everything below it.
    pub applied_offset: u64,
    /// Records not yet in the rollups.
    pub lag: u64,
    /// How long ago the oldest record the rollups lack was appended, ms (0: caught up).
    pub behind_ms: u64,
}

/// How far the store and the stream processor are behind the log: the age of the oldest
/// record each has not applied (zero when caught up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Behind {
    pub store: Duration,
    pub stream: Duration,
}

impl Behind {
    /// Reads both from the log's append times.
    pub fn of(log: &dyn Log, pipeline: &dyn PipelineStatus) -> Self {
        let age = |offset| log.appended_ago(offset).unwrap_or_default();
        Self {
            store: age(pipeline.store_applied_offset()),
            stream: age(pipeline.stream_applied_offset()),
        }
    }

    /// The one further behind, and its name.
    pub fn worst(&self) -> (&'static str, Duration) {
        if self.store >= self.stream {
            ("store", self.store)
        } else {
            ("stream processor", self.stream)
        }
    }
}

/// `GET /lag`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lag {
    pub end_offset: u64,
    pub consumers: Vec<ConsumerLag>,
    pub store: StoreLag,
    pub stream: StreamLag,
}

/// The operations service.
#[derive(Debug)]
pub struct OpsService {
    log: Arc<dyn Log>,
    pipeline: Arc<dyn PipelineStatus>,
    catalog: Arc<dyn Catalog>,
    dedup: Arc<dyn DedupIndex>,
    stats: Arc<TenantStats>,
    started: Instant,
}

impl OpsService {
    pub fn new(
        log: Arc<dyn Log>,
        pipeline: Arc<dyn PipelineStatus>,
        catalog: Arc<dyn Catalog>,
        dedup: Arc<dyn DedupIndex>,
        stats: Arc<TenantStats>,
    ) -> Self {
        Self {
            log,
            pipeline,
            catalog,
            dedup,
            stats,
            started: Instant::now(),
        }
    }

    /// Liveness: open to anyone.
    pub fn health(&self) -> Health {
        Health {
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }

    /// Readiness: recovery is done (it is before the listener opens) and the log
    /// acknowledges. Open to anyone.
    pub fn ready(&self) -> Readiness {
        match self.log.health() {
            LogHealth::Ok => Readiness {
                ready: true,
                status: "ready",
                log: "ok",
                reason: None,
            },
            LogHealth::Failed(reason) => {
                tracing::warn!(%reason, "not ready: log failed");
                Readiness {
                    ready: false,
                    status: "not_ready",
                    log: "failed",
                    reason: Some("a log write or fsync failed; restart to recover"),
                }
            }
            LogHealth::Closed => Readiness {
                ready: false,
                status: "not_ready",
                log: "closed",
                reason: None,
            },
        }
    }

    /// The caller's tenant's ingest counters since the process started.
    pub fn counters(&self, caller: &Principal) -> Result<CountersSnapshot> {
        let p = caller.require(Scope::Read)?;
        Ok(self.stats.get(&p.tenant_id).snapshot())
    }

    pub fn stats(&self, caller: &Principal) -> Result<Stats> {
        let p = caller.require(Scope::Read)?;
        Ok(Stats {
            tenant_id: p.tenant_id.clone(),
            since_start: self.stats.get(&p.tenant_id).snapshot(),
            uptime_seconds: self.started.elapsed().as_secs(),
            log: LogPosition {
                start_offset: self.log.start_offset(),
                end_offset: self.log.end_offset(),
                queued_bytes: self.log.queued_bytes(),
            },
            store: self.pipeline.store(),
        })
    }

    pub fn lag(&self, caller: &Principal) -> Result<Lag> {
        caller.require(Scope::Read)?;
        let end = self.log.end_offset();
        let store = self.pipeline.store();
        let stream = self.pipeline.stream_applied_offset();
        let ms = |offset| {
            self.log
                .appended_ago(offset)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        Ok(Lag {
            end_offset: end,
            consumers: self
                .log
                .consumers()
                .into_iter()
                .map(|c| ConsumerLag {
                    lag: end.saturating_sub(c.next_offset),
                    name: c.name,
                    next_offset: c.next_offset,
                })
                .collect(),
            store: StoreLag {
                applied_offset: store.applied_offset,
                persisted_offset: store.persisted_offset,
                lag: end.saturating_sub(store.applied_offset),
                behind_ms: ms(store.applied_offset),
            },
            stream: StreamLag {
                applied_offset: stream,
                lag: end.saturating_sub(stream),
                behind_ms: ms(stream),
            },
        })
    }

    /// Sets the gauges that are read rather than pushed (before each scrape).
    pub fn refresh_gauges(&self) {
        metrics::gauge!("eddy_log_queue_bytes").set(self.log.queued_bytes() as f64);
        metrics::gauge!("eddy_log_end_offset").set(self.log.end_offset() as f64);
        metrics::gauge!("eddy_log_healthy").set(if self.log.health() == LogHealth::Ok {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("eddy_stream_lag_records").set(
            self.log
                .end_offset()
                .saturating_sub(self.pipeline.stream_applied_offset()) as f64,
        );
        metrics::gauge!("eddy_dedup_entries").set(self.dedup.len() as f64);
        let tenants = match self.catalog.tenants() {
            Ok(t) => t.len(),
            Err(e) => {
                tracing::warn!(error = %e, "tenant count unavailable for /metrics");
                0
            }
        };
        metrics::gauge!("eddy_tenants").set(tenants as f64);
        metrics::gauge!("eddy_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    }
}
