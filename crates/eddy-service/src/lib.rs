//! Eddy's application layer: every operation a client can ask for, with typed requests and
//! answers, one domain [`Error`] kind, and the scope check of the caller's [`auth::Principal`].
//!
//! Protocol front ends (`eddy-server`'s HTTP routes now, gRPC next) parse a request, call a
//! service here and encode its answer; they hold no application logic. Services work through
//! seams held as `Arc<dyn …>`: [`catalog::Catalog`] (tenants and keys), [`dedup::DedupIndex`],
//! [`series::SeriesIndex`], `eddy_log::Log`. Only the binary picks their implementations
//! ([`file_catalog::FileCatalog`], [`dedup::MemoryDedup`], the WAL, the processor as series
//! index) and hands them to [`Services::new`].
//!
//! This crate must not know any protocol: no HTTP types, status codes, JSON built by hand or
//! wire encodings. Serde derives on the typed answers are fine.
//!
//! Moved here so far: authentication and scopes, the tenant/key catalog, the whole ingest path
//! (limits, normalisation, all-or-nothing/partial, series limit, quota, dedup, append, ack
//! mode), administration (tenants, keys, the tenant-deletion saga), rules and alerts
//! (validation, ids, the rule limit without races, state transitions) and ops (health,
//! readiness, stats, lag, gauges), queries (events, devices, time series with the rollup fast
//! path, rollups with the read-time correction), analytics, exports, SQL (tables from the
//! parsed statement) and live subscriptions (ARCHITECTURE.md, "Crates and the direction of
//! dependencies").

pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod auth;
pub mod catalog;
pub mod dedup;
mod error;
pub mod export;
pub mod file_catalog;
pub mod ingest;
pub mod keys;
pub mod live;
pub mod ops;
pub mod overview;
pub mod query;
pub mod quota;
pub mod range;
pub mod series;
pub mod sql;
pub mod stats;

use std::sync::Arc;

use eddy_log::Log;
use eddy_model::Clock;

pub use error::{Error, Result};

/// The seams the services work through, chosen by the binary.
#[derive(Debug, Clone)]
pub struct Seams {
    pub log: Arc<dyn Log>,
    pub catalog: Arc<dyn catalog::Catalog>,
    pub dedup: Arc<dyn dedup::DedupIndex>,
    pub series: Arc<dyn series::SeriesIndex>,
    pub alerts: Arc<dyn alerts::AlertsEngine>,
    pub pipeline: Arc<dyn ops::PipelineStatus>,
    /// The store queries read.
    pub store: Arc<dyn query::Store>,
    /// The rollups queries read.
    pub rollups: Arc<dyn query::RollupReader>,
    /// Where live messages come from.
    pub live: Arc<dyn live::LiveFeed>,
    pub clock: Arc<dyn Clock>,
}

/// What the services are configured with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub ingest: ingest::IngestConfig,
    /// The most rows (or buckets) one query answer may hold.
    pub max_result_rows: usize,
    /// An event received more than this after its time counts as late (the processor's
    /// allowed lateness).
    pub late_after_ns: i64,
}

/// Every service, sharing one set of seams.
#[derive(Debug, Clone)]
pub struct Services {
    pub ingest: ingest::IngestService,
    pub admin: admin::AdminService,
    pub alerts: Arc<alerts::AlertsService>,
    pub ops: Arc<ops::OpsService>,
    pub query: Arc<query::QueryService>,
    pub analytics: Arc<analytics::AnalyticsService>,
    pub overview: Arc<overview::OverviewService>,
    pub sql: Arc<sql::SqlService>,
    pub live: Arc<live::LiveService>,
    /// Turns a presented secret into the caller's principal (every front end's first step).
    pub auth: Arc<dyn auth::Authenticator>,
    /// The dedup index, for the binary's fault tests; front ends go through the services
    /// (the other seams are not reachable from here at all, so no front end can skip the
    /// services' scope checks).
    pub dedup: Arc<dyn dedup::DedupIndex>,
}

impl Services {
    pub fn new(config: ServiceConfig, seams: Seams) -> Self {
        let quotas = Arc::new(quota::Quotas::new(config.ingest.max_batch_events));
        let stats = Arc::new(stats::TenantStats::default());
        let ingest = ingest::IngestService::new(
            config.ingest,
            ingest::IngestDeps {
                log: seams.log.clone(),
                pipeline: seams.pipeline.clone(),
                catalog: seams.catalog.clone(),
                dedup: seams.dedup.clone(),
                series: seams.series.clone(),
                quotas: quotas.clone(),
                stats: stats.clone(),
                clock: seams.clock.clone(),
            },
        );
        let admin = admin::AdminService::new(
            seams.catalog.clone(),
            seams.log.clone(),
            seams.dedup.clone(),
            quotas,
            stats.clone(),
            seams.clock.clone(),
        );
        let sql = Arc::new(sql::SqlService::new(
            seams.store.clone(),
            seams.rollups.clone(),
            seams.alerts.clone(),
            config.max_result_rows,
        ));
        let alerts = Arc::new(alerts::AlertsService::new(
            seams.log.clone(),
            seams.alerts,
            seams.clock.clone(),
        ));
        let analytics = Arc::new(analytics::AnalyticsService::new(
            seams.store.clone(),
            stats.clone(),
            seams.clock.clone(),
            config.late_after_ns,
        ));
        let query = Arc::new(query::QueryService::new(
            seams.store,
            seams.rollups,
            seams.pipeline.clone(),
            config.max_result_rows,
        ));
        let ops = Arc::new(ops::OpsService::new(
            seams.log.clone(),
            seams.pipeline,
            seams.catalog.clone(),
            seams.dedup.clone(),
            stats.clone(),
        ));
        let overview = Arc::new(overview::OverviewService::new(
            analytics.clone(),
            alerts.clone(),
            ops.clone(),
        ));
        // A catalog is its own authenticator (trait upcasting).
        let auth: Arc<dyn auth::Authenticator> = seams.catalog.clone();
        Self {
            ingest,
            admin,
            alerts,
            ops,
            query,
            analytics,
            overview,
            sql,
            live: Arc::new(live::LiveService::new(seams.live)),
            auth,
            dedup: seams.dedup,
        }
    }
}

#[cfg(test)]
mod analytics_tests;
#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod test_store;
#[cfg(test)]
mod tests;
