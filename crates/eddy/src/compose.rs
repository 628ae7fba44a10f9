//! The composition root: the only place that picks implementations. It opens the engines the
//! configuration names (today: the embedded WAL, the embedded store, the in-process stream
//! processor, the file catalog, the in-memory dedup index), adapts them to the service layer's
//! seams, builds the services and hands everything to the HTTP front end.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::config::EngineConfig;
use eddy_log::Log;
use eddy_log::wal::{Wal, WalConfig};
use eddy_model::Clock;
use eddy_server::{Server, ServerConfig};
use eddy_service::alerts::{Alert, AlertFilter, AlertPage, AlertsEngine, Rule};
use eddy_service::catalog::{Catalog, secs_to_ns};
use eddy_service::dedup::MemoryDedup;
use eddy_service::file_catalog::FileCatalog;
use eddy_service::ingest::IngestConfig;
use eddy_service::live::{LiveFeed, LiveSource, Received};
use eddy_service::ops::{PipelineStatus, StoreStatus};
use eddy_service::query::{
    CountWindow, CountWindowsQuery, MetricWindow, MetricWindowsQuery, RollupReader,
    SeriesWindowsQuery, Windows,
};
use eddy_service::series::SeriesIndex;
use eddy_service::{Seams, ServiceConfig, Services};

/// A server composed and ready to serve.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) server: Server,
    /// The gRPC front end over the same services (`None`: turned off).
    pub(crate) grpc: Option<eddy_grpc::GrpcServer>,
    /// The admin key generated on first start (also written to `<data-dir>/admin.key`).
    pub(crate) generated_admin_key: Option<String>,
    /// The engines, for the ordered shutdown after the server stops.
    pub(crate) engines: Running,
}

/// The engines that run beside the HTTP front end.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) wal: Arc<Wal>,
    store: Arc<eddy_store::EmbeddedStore>,
    stream: Arc<eddy_stream::Processor>,
}

impl Running {
    /// The ordered end, after the HTTP front end stopped accepting and drained: write and fsync
    /// everything queued in the log, let the store apply and persist the rest (so a restart
    /// replays nothing), checkpoint the rollups.
    pub(crate) async fn shutdown(self) -> Result<()> {
        let wal = self.wal.clone();
        let flushed = match tokio::task::spawn_blocking(move || wal.shutdown()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "the log could not be flushed on shutdown: {e}"
            )),
            Err(e) => Err(anyhow::anyhow!("the log shutdown task failed: {e}")),
        };
        match &flushed {
            Ok(()) => tracing::info!(end_offset = self.wal.end_offset(), "log flushed"),
            // Acknowledged events were fsynced before their answer; only queued ones are lost.
            Err(e) => tracing::error!(error = %e, "log flush failed; persisting what was applied"),
        }
        self.store.shutdown().await;
        self.stream.shutdown().await;
        self.store.stop_queries().await;
        tracing::info!(
            persisted_offset = self.store.stats().persisted_offset,
            stream_offset = self.stream.applied_offset(),
            "store persisted, rollups checkpointed; bye"
        );
        flushed
    }
}

/// Opens the data dir and composes the platform. Must run inside the async runtime (the
/// store, processor and notifier start their tasks).
pub(crate) fn open(
    config: ServerConfig,
    engine_config: EngineConfig,
    grpc: Option<eddy_grpc::GrpcConfig>,
    clock: Arc<dyn Clock>,
) -> Result<Opened> {
    // The metrics recorder first: the engines record from their first replayed record.
    let _ = eddy_server::metrics::prometheus_handle();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let mut wal_config = WalConfig::new(config.data_dir.join("wal"));
    wal_config.segment_bytes = config.wal_segment_bytes;
    wal_config.max_queue_bytes = config.wal_queue_bytes;
    let wal = Arc::new(Wal::open(wal_config).map_err(|e| anyhow::anyhow!("{e}"))?);
    let log: Arc<dyn Log> = wal.clone();
    let (catalog, generated) = FileCatalog::open(&config.data_dir, config.admin_key.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let catalog: Arc<dyn Catalog> = Arc::new(catalog);

    let window_ns = i64::try_from(config.dedup_window.as_nanos()).unwrap_or(i64::MAX);
    let dedup = Arc::new(MemoryDedup::new(window_ns, config.dedup_max_entries));
    let t = Instant::now();
    let scanned = dedup
        .rebuild_from_log(log.as_ref(), clock.now_ns())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(
        records = scanned,
        ids = eddy_service::dedup::DedupIndex::len(dedup.as_ref()),
        elapsed_ms = t.elapsed().as_millis() as u64,
        "dedup index rebuilt from the log"
    );

    let default_retention_ns =
        i64::try_from(config.default_retention.as_nanos()).unwrap_or(i64::MAX);
    let mut store_config = engine_config.store.clone();
    store_config.dir = config.data_dir.join("store");
    let store = eddy_store::EmbeddedStore::open(store_config, wal.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.set_retention(Arc::new(CatalogRetention {
        catalog: catalog.clone(),
        clock: clock.clone(),
        default_ns: default_retention_ns,
    }));
    let mut stream_config = engine_config.stream.clone();
    stream_config.dir = config.data_dir.join("stream");
    let stream = eddy_stream::Processor::open_with_clock(stream_config, wal.clone(), clock.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store.start();
    stream.start();

    let services = Services::new(
        ServiceConfig {
            ingest: IngestConfig {
                limits: config.limits.clone(),
                max_batch_events: config.max_batch_events,
                default_retention: config.default_retention,
                default_events_per_sec: config.default_events_per_sec,
                max_pipeline_lag: config.max_pipeline_lag,
            },
            max_result_rows: engine_config.store.max_result_rows,
            late_after_ns: engine_config.stream.lateness_ns(),
        },
        Seams {
            log: log.clone(),
            catalog,
            dedup,
            series: Arc::new(ProcessorSeries(stream.clone())),
            alerts: Arc::new(ProcessorAlerts(stream.clone())),
            pipeline: Arc::new(Pipeline {
                store: store.clone(),
                stream: stream.clone(),
            }),
            store: Arc::new(store.clone()),
            rollups: Arc::new(ProcessorRollups(stream.clone())),
            live: Arc::new(ProcessorFeed(stream.clone())),
            clock: clock.clone(),
        },
    );
    let grpc = grpc.map(|g| eddy_grpc::GrpcServer::new(g, services.clone(), clock.clone()));
    let server = Server::new(config, services, stream.take_notices(), clock);
    Ok(Opened {
        server,
        grpc,
        generated_admin_key: generated,
        engines: Running { wal, store, stream },
    })
}

/// Retention as the catalog says (a tenant's own, or the server default), on the server's
/// clock, for the store's file expiry.
#[derive(Debug)]
struct CatalogRetention {
    catalog: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
    default_ns: i64,
}

impl eddy_store::RetentionPolicy for CatalogRetention {
    fn retention_ns(&self, tenant: &str) -> i64 {
        match self.catalog.tenant(tenant) {
            Ok(t) => t.retention_secs.map_or(self.default_ns, secs_to_ns),
            Err(_) => self.default_ns,
        }
    }

    fn now_ns(&self) -> i64 {
        self.clock.now_ns()
    }
}

/// The in-process stream processor as the ingest path's series index.
#[derive(Debug)]
struct ProcessorSeries(Arc<eddy_stream::Processor>);

impl SeriesIndex for ProcessorSeries {
    fn limit(&self) -> usize {
        self.0.config().max_series_per_tenant
    }

    fn series_count(&self, tenant: &str) -> usize {
        self.0.read(tenant, |r| r.series_count()).unwrap_or(0)
    }

    fn unknown_series(&self, tenant: &str, series: &[(&str, &str)]) -> Vec<usize> {
        self.0
            .read(tenant, |r| {
                (0..series.len())
                    .filter(|i| !r.has_series(series[*i].0, series[*i].1))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The in-process stream processor as the rollups queries read.
#[derive(Debug)]
struct ProcessorRollups(Arc<eddy_stream::Processor>);

#[async_trait::async_trait]
impl RollupReader for ProcessorRollups {
    async fn metric_windows(
        &self,
        tenant: &str,
        q: MetricWindowsQuery,
    ) -> eddy_service::Result<Windows<MetricWindow>> {
        Ok(self.0.metric_windows(tenant, q).await?)
    }

    async fn count_windows(
        &self,
        tenant: &str,
        q: CountWindowsQuery,
    ) -> eddy_service::Result<Windows<CountWindow>> {
        Ok(self.0.count_windows(tenant, q).await?)
    }

    async fn series_windows(
        &self,
        tenant: &str,
        q: SeriesWindowsQuery,
    ) -> eddy_service::Result<Option<Vec<MetricWindow>>> {
        Ok(self.0.series_windows(tenant, q).await?)
    }

    fn sql_tables(&self, tenant: &str) -> eddy_service::Result<Vec<eddy_store::ExtraTable>> {
        Ok(self
            .0
            .rollup_tables(tenant)?
            .into_iter()
            .map(|t| eddy_store::ExtraTable {
                name: t.name.to_string(),
                schema: t.schema,
                files: t.files,
                batches: vec![t.batch],
            })
            .collect())
    }
}

/// The in-process stream processor's live fan-out.
#[derive(Debug)]
struct ProcessorFeed(Arc<eddy_stream::Processor>);

impl LiveFeed for ProcessorFeed {
    fn subscribe(
        &self,
        tenant: &str,
        channels: &std::collections::BTreeSet<eddy_stream::Channel>,
    ) -> Box<dyn LiveSource> {
        Box::new(FeedSubscription(self.0.subscribe(tenant, channels)))
    }
}

struct FeedSubscription(eddy_stream::Subscription);

#[async_trait::async_trait]
impl LiveSource for FeedSubscription {
    async fn recv(&mut self) -> Received {
        use tokio::sync::broadcast::error::RecvError;
        match self.0.recv().await {
            Ok(m) => Received::Message(m),
            Err(RecvError::Lagged(n)) => Received::Lagged(n),
            Err(RecvError::Closed) => Received::Closed,
        }
    }
}

/// The in-process stream processor as the rules-and-alerts engine.
#[derive(Debug)]
struct ProcessorAlerts(Arc<eddy_stream::Processor>);

#[async_trait::async_trait]
impl AlertsEngine for ProcessorAlerts {
    fn rules(&self, tenant: &str) -> eddy_service::Result<Vec<Rule>> {
        Ok(self
            .0
            .read_alerts(tenant, |a| a.rules().cloned().collect())?)
    }

    fn rule(&self, tenant: &str, id: &str) -> eddy_service::Result<Option<Rule>> {
        Ok(self.0.read_alerts(tenant, |a| a.rule(id).cloned())?)
    }

    fn alerts(
        &self,
        tenant: &str,
        filter: &AlertFilter,
        limit: usize,
    ) -> eddy_service::Result<AlertPage> {
        Ok(self.0.read_alerts(tenant, |a| {
            let mut page = AlertPage {
                suppressed: a.suppressed,
                ..AlertPage::default()
            };
            for al in a.alerts().filter(|al| filter.matches(al)) {
                page.total += 1;
                if page.alerts.len() < limit {
                    page.alerts.push(al.clone());
                }
            }
            page
        })?)
    }

    fn alert(&self, tenant: &str, id: &str) -> eddy_service::Result<Option<Alert>> {
        Ok(self.0.read_alerts(tenant, |a| a.alert(id).cloned())?)
    }

    async fn wait_applied(&self, offset: u64, timeout: std::time::Duration) -> bool {
        self.0.wait_applied(offset, timeout).await
    }
}

/// The store's and the processor's progress, for `/stats`, `/lag` and the gauges.
#[derive(Debug)]
struct Pipeline {
    store: Arc<eddy_store::EmbeddedStore>,
    stream: Arc<eddy_stream::Processor>,
}

impl PipelineStatus for Pipeline {
    fn store(&self) -> StoreStatus {
        let s = self.store.stats();
        StoreStatus {
            applied_offset: s.applied_offset,
            persisted_offset: s.persisted_offset,
            buffered_bytes: s.buffered_bytes,
            files: s.files,
            file_bytes: s.file_bytes,
        }
    }

    fn store_applied_offset(&self) -> u64 {
        self.store.applied_offset()
    }

    fn stream_applied_offset(&self) -> u64 {
        self.stream.applied_offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use eddy_service::dedup::dedup_key;
    use tower::ServiceExt;

    /// Over gRPC: a log failure turns `grpc.health.v1` NOT_SERVING and ingest UNAVAILABLE
    /// with RetryInfo.
    #[tokio::test]
    async fn fsync_failure_turns_grpc_health_not_serving() {
        use eddy_proto::v1 as pb;
        use tonic_types::StatusExt;
        let dir = tempfile::tempdir().unwrap();
        let mut opened = open(
            ServerConfig::new(dir.path()),
            EngineConfig::default(),
            Some(eddy_grpc::GrpcConfig::default()),
            Arc::new(eddy_model::SystemClock),
        )
        .unwrap();
        let key = opened.generated_admin_key.clone().unwrap();
        let wal = opened.engines.wal.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let grpc = opened.grpc.take().unwrap();
        let served = tokio::spawn(grpc.serve(listener, async move {
            let _ = stopped.await;
        }));
        let ch = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
        let status = |h: &mut tonic_health::pb::health_client::HealthClient<_>| {
            let mut h = h.clone();
            async move {
                h.check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
            }
        };
        use tonic_health::pb::health_check_response::ServingStatus;
        assert_eq!(status(&mut health).await, ServingStatus::Serving as i32);
        wal.inject_sync_failure();
        let mut ingest =
            pb::event_ingestion_service_client::EventIngestionServiceClient::new(ch.clone());
        let mut req = tonic::Request::new(pb::IngestEventRequest {
            event: Some(pb::Event {
                r#type: "a".into(),
                ..Default::default()
            }),
        });
        req.metadata_mut().insert("x-api-key", key.parse().unwrap());
        let err = ingest.ingest_event(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(err.get_error_details().retry_info().is_some());
        // Health follows readiness (polled): wait for the condition, bounded.
        let mut turned = false;
        for _ in 0..500 {
            if status(&mut health).await == ServingStatus::NotServing as i32 {
                turned = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(turned, "health stayed SERVING after the log failed");
        let _ = stop.send(());
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn fsync_failure_answers_503_and_reports_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(
            ServerConfig::new(dir.path()),
            EngineConfig::default(),
            None,
            Arc::new(eddy_model::SystemClock),
        )
        .unwrap();
        let key = opened.generated_admin_key.unwrap();
        let wal = opened.engines.wal.clone();
        let server = opened.server;
        let app = server.router();
        let post = |body: &'static str| {
            Request::post("/api/v1/events")
                .header("x-api-key", &key)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        };
        let get = |path: &'static str| Request::get(path).body(Body::empty()).unwrap();
        assert_eq!(
            app.clone()
                .oneshot(post(r#"{"type":"a"}"#))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            app.clone().oneshot(get("/ready")).await.unwrap().status(),
            StatusCode::OK
        );

        wal.inject_sync_failure();
        let r = app
            .clone()
            .oneshot(post(r#"{"event_id":"b","type":"b"}"#))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(
            app.clone().oneshot(get("/ready")).await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // No blind retry: later appends are refused too, and nothing unacknowledged is visible.
        let r = app.clone().oneshot(post(r#"{"type":"c"}"#)).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(wal.end_offset(), 1);
        // The failed event's id was released: it is not remembered as stored.
        let dedup = &server.state().services.dedup;
        let fresh = dedup
            .reserve_and_append(
                "default",
                &[Some(dedup_key("default", "b"))],
                0,
                &mut |_| Ok(()),
            )
            .unwrap();
        assert_eq!(fresh, vec![true]);
        // /health still answers (liveness is not readiness).
        assert_eq!(
            app.clone().oneshot(get("/health")).await.unwrap().status(),
            StatusCode::OK
        );
    }
}
