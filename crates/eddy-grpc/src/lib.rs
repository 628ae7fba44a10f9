//! Eddy's gRPC front end, package `eddy.v1` (`proto/eddy/v1`): `EventIngestionService`,
//! `AnalyticsService` and `MetricsService` over the service layer, the standard
//! `grpc.health.v1.Health` (following readiness) and server reflection (`v1` and `v1alpha`).
//!
//! Like the HTTP front end it decodes, calls an `eddy-service` operation and encodes; it
//! depends on `eddy-service`, `eddy-model` and the generated `eddy-proto` only (the dependency
//! rule, `eddy/src/layering.rs`). What is gRPC's own lives here: metadata auth (`auth`), the
//! one mapping of the domain error to a status with details (`error`), message size limits,
//! HTTP/2 limits and keepalive (`serve`), client deadlines, `x-request-id` and per-method
//! metrics (`telemetry`), and stream framing with bounded read-ahead (`ingest`).

mod analytics;
mod auth;
mod convert;
mod device_metrics;
mod error;
mod health;
mod ingest;
mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eddy_model::Clock;
use eddy_proto::v1::analytics_service_server::AnalyticsServiceServer;
use eddy_proto::v1::event_ingestion_service_server::EventIngestionServiceServer;
use eddy_proto::v1::metrics_service_server::MetricsServiceServer;
use eddy_service::Services;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

pub use error::Error;

/// HTTP/2 flow-control windows: what a client may send ahead per stream and per connection.
const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// How long connections stay open at shutdown after the last stream ended.
const LINGER: Duration = Duration::from_millis(200);

/// How long idle connections get to close after GOAWAY at shutdown.
const IDLE_CLOSE: Duration = Duration::from_secs(1);

/// Settings of the gRPC listener.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// Largest message decoded or encoded, bytes (a larger one is RESOURCE_EXHAUSTED).
    pub max_message_bytes: usize,
    /// Most concurrent streams (calls) per HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 keepalive ping interval, and how long a ping may go unanswered.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Batches of one `StreamEvents` call being ingested at once; the server reads the next
    /// only when an ack can go out (acks are flow-controlled by the client).
    pub stream_window: usize,
    /// How long shutdown waits for calls to finish before dropping connections.
    pub shutdown_grace: Duration,
    /// Bytes of ingest messages being processed at once (over all calls); beyond it a batch
    /// is refused with UNAVAILABLE and RetryInfo, like HTTP's 503 (`--max-inflight-size`).
    pub max_inflight_bytes: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_concurrent_streams: 256,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            stream_window: 4,
            shutdown_grace: Duration::from_secs(10),
            max_inflight_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What every RPC handler shares.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) services: Services,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Arc<GrpcConfig>,
    /// Turns true when shutdown starts: streams stop reading and end after their in-flight
    /// acks; live subscriptions end.
    pub(crate) stopping: watch::Receiver<bool>,
    /// Streaming calls open now (shutdown waits for them to end).
    pub(crate) streams: Arc<AtomicUsize>,
    /// The in-flight budget of ingest messages, in bytes.
    pub(crate) inflight: Arc<tokio::sync::Semaphore>,
}

/// Counts a streaming call as open until dropped (moved into the stream).
#[derive(Debug)]
pub(crate) struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    pub(crate) fn new(ctx: &Ctx) -> Self {
        ctx.streams.fetch_add(1, Ordering::SeqCst);
        Self(ctx.streams.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ctx {
    /// The caller of a request, from its metadata.
    pub(crate) fn caller<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> Result<eddy_service::auth::Principal, tonic::Status> {
        auth::principal(self.services.auth.as_ref(), req.metadata()).map_err(error::status)
    }
}

/// The gRPC server over composed services.
#[derive(Debug)]
pub struct GrpcServer {
    ctx: Ctx,
    stop: watch::Sender<bool>,
}

impl GrpcServer {
    pub fn new(config: GrpcConfig, services: Services, clock: Arc<dyn Clock>) -> Self {
        let (stop, stopping) = watch::channel(false);
        let budget = config
            .max_inflight_bytes
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Self {
            ctx: Ctx {
                services,
                clock,
                config: Arc::new(config),
                stopping,
                streams: Arc::new(AtomicUsize::new(0)),
                inflight: Arc::new(tokio::sync::Semaphore::new(budget)),
            },
            stop,
        }
    }

    /// Every service of the API, health and reflection, with the message limits.
    fn routes(&self) -> Result<tonic::service::Routes, Error> {
        let max = self.ctx.config.max_message_bytes;
        let ingest = EventIngestionServiceServer::new(ingest::Ingest(self.ctx.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let analytics = AnalyticsServiceServer::new(analytics::Analytics(self.ctx.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let metrics = MetricsServiceServer::new(device_metrics::Metrics(self.ctx.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let reflection = |b: tonic_reflection::server::Builder<'static>| {
            b.register_encoded_file_descriptor_set(eddy_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // The error details (`google.rpc.BadRequest`, `RetryInfo`, `ErrorInfo`), so
                // reflection clients can decode them.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let v1 = reflection(tonic_reflection::server::Builder::configure())
            .build_v1()
            .map_err(|e| Error::Reflection(e.to_string()))?;
        let v1alpha = reflection(tonic_reflection::server::Builder::configure())
            .build_v1alpha()
            .map_err(|e| Error::Reflection(e.to_string()))?;
        let health = health::spawn(self.ctx.clone());
        Ok(tonic::service::Routes::new(ingest)
            .add_service(analytics)
            .add_service(metrics)
            .add_service(health)
            .add_service(v1)
            .add_service(v1alpha))
    }

    /// Serves on `listener` until `shutdown` resolves; then stops accepting, lets streams end
    /// after their in-flight acks and waits for calls to finish (up to the configured grace).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let routes = self.routes()?;
        let service = telemetry::Telemetry::new(routes, telemetry::known_methods());
        let config = self.ctx.config.clone();
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.max_concurrent_streams)
            .keep_alive_interval(Some(config.keepalive_interval))
            .keep_alive_timeout(config.keepalive_timeout)
            // Fixed receive windows bound what a client can send ahead per stream and per
            // connection (decoded messages are bounded by the in-flight budget).
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
        let graceful = GracefulShutdown::new();
        // Connection tasks, so that those still open after the grace are ended, not left
        // running into the engines' shutdown.
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "gRPC accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set");
                    }
                    let conn = http2.serve_connection(
                        TokioIo::new(tcp),
                        TowerToHyperService::new(service.clone()),
                    );
                    let conn = graceful.watch(conn);
                    while conns.try_join_next().is_some() {}
                    conns.spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "gRPC connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!("gRPC: shutting down; streams end after their in-flight acks");
        let _ = self.stop.send_replace(true);
        drop(listener);
        let streams = self.ctx.streams.clone();
        let drained = async move {
            // Streams answer what they read and end; then a short linger lets clients see
            // the end and stop sending before the connections close (a socket closed with
            // unread data is reset, and the peer may lose the final status with it).
            while streams.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(LINGER).await;
            // No call is open any more: connections a client keeps open are closed after a
            // short wait for their GOAWAY handshake.
            if tokio::time::timeout(IDLE_CLOSE, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::debug!("gRPC: idle connections still open at shutdown; closing them");
            }
        };
        tokio::select! {
            () = drained => {}
            () = tokio::time::sleep(config.shutdown_grace) => {
                tracing::warn!(grace_secs = config.shutdown_grace.as_secs(), "gRPC shutdown grace elapsed; dropping remaining calls");
            }
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        Ok(())
    }
}
