//! Command line and configuration: every setting is a flag, an `EDDY_…` environment variable
//! and a key of the optional TOML file (`--config`), in that order of precedence; defaults
//! work on a laptop. Invalid values fail at start-up naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// Eddy: a real-time analytics platform in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "eddy",
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_help = ADMIN_KEY_HELP
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    /// Settings of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

/// `EDDY_ADMIN_KEY` is read from the environment (or the file) only, never a flag.
const ADMIN_KEY_HELP: &str = "Environment only: EDDY_ADMIN_KEY presets the admin key (at least 32 characters); without it the first start generates one, prints it once and saves it in <data-dir>/admin.key (mode 0600).";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the platform (the default).
    #[command(after_help = ADMIN_KEY_HELP)]
    Serve(Box<ServeArgs>),
    /// Generate realistic load against a running server and report throughput and latency.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Manage tenants through a running server's admin API.
    Tenants(crate::admin::TenantsArgs),
    /// Manage a tenant's API keys through a running server's admin API.
    Keys(crate::admin::KeysArgs),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of `eddy serve`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the settings below (keys in snake_case) [default: none].
    #[arg(long, env = "EDDY_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Where the log, catalog and admin key live [default: ./data].
    #[arg(long, env = "EDDY_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// HTTP listen address, ip:port or host:port; port 0 picks a free port
    /// [default: 127.0.0.1:8080].
    #[arg(long, env = "EDDY_HTTP_ADDR")]
    pub(crate) http_addr: Option<String>,
    /// gRPC listen address, ip:port or host:port; port 0 picks a free port, empty turns gRPC
    /// off [default: 127.0.0.1:50051].
    #[arg(long, env = "EDDY_GRPC_ADDR")]
    pub(crate) grpc_addr: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "EDDY_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `eddy_server=debug` [default: info].
    #[arg(long, env = "EDDY_LOG_LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Largest request body as sent [default: 16MiB].
    #[arg(long, env = "EDDY_MAX_BODY_SIZE")]
    pub(crate) max_body_size: Option<String>,
    /// Largest body after gzip decompression [default: 64MiB].
    #[arg(long, env = "EDDY_MAX_DECOMPRESSED_SIZE")]
    pub(crate) max_decompressed_size: Option<String>,
    /// Request body bytes processed at once; beyond it ingest answers 503 [default: 256MiB].
    #[arg(long, env = "EDDY_MAX_INFLIGHT_SIZE")]
    pub(crate) max_inflight_size: Option<String>,
    /// Most events per request [default: 10000].
    #[arg(long, env = "EDDY_MAX_BATCH_EVENTS")]
    pub(crate) max_batch_events: Option<usize>,
    /// Most properties per event [default: 256].
    #[arg(long, env = "EDDY_MAX_PROPERTIES")]
    pub(crate) max_properties: Option<usize>,
    /// Most metrics per event [default: 256].
    #[arg(long, env = "EDDY_MAX_METRICS")]
    pub(crate) max_metrics: Option<usize>,
    /// Longest string value in bytes [default: 4096].
    #[arg(long, env = "EDDY_MAX_STRING_LEN")]
    pub(crate) max_string_len: Option<usize>,
    /// How far in the future an event time may be [default: 1h].
    #[arg(long, env = "EDDY_MAX_FUTURE_SKEW")]
    pub(crate) max_future_skew: Option<String>,
    /// Window in which a repeated event_id is a duplicate [default: 24h].
    #[arg(long, env = "EDDY_DEDUP_WINDOW")]
    pub(crate) dedup_window: Option<String>,
    /// Most event ids the dedup index holds [default: 2000000].
    #[arg(long, env = "EDDY_DEDUP_MAX_ENTRIES")]
    pub(crate) dedup_max_entries: Option<usize>,
    /// Retention of tenants without their own; `0` keeps forever [default: 30d].
    #[arg(long, env = "EDDY_DEFAULT_RETENTION")]
    pub(crate) default_retention: Option<String>,
    /// Ingest quota of tenants without their own, events/s; `0` = unlimited [default: 0].
    #[arg(long, env = "EDDY_DEFAULT_EVENTS_PER_SEC")]
    pub(crate) default_events_per_sec: Option<u32>,
    /// Ingest answers 503 with Retry-After while the store or the stream processor has not
    /// applied a record appended longer ago than this; `0` turns it off [default: 10s].
    #[arg(long, env = "EDDY_MAX_PIPELINE_LAG")]
    pub(crate) max_pipeline_lag: Option<String>,
    /// WAL segment size [default: 64MiB].
    #[arg(long, env = "EDDY_WAL_SEGMENT_SIZE")]
    pub(crate) wal_segment_size: Option<String>,
    /// Bound of the WAL append queue; beyond it ingest answers 429 [default: 256MiB].
    #[arg(long, env = "EDDY_WAL_QUEUE_SIZE")]
    pub(crate) wal_queue_size: Option<String>,
    /// Persist store buffers to Parquet once they hold this much [default: 64MiB].
    #[arg(long, env = "EDDY_STORE_PERSIST_SIZE")]
    pub(crate) store_persist_size: Option<String>,
    /// Persist store buffers once their oldest row is this old [default: 60s].
    #[arg(long, env = "EDDY_STORE_PERSIST_AGE")]
    pub(crate) store_persist_age: Option<String>,
    /// Most memory the store's buffers may hold; beyond it the store stops reading the log
    /// until a persist finishes [default: 512MiB].
    #[arg(long, env = "EDDY_STORE_MAX_BUFFER_SIZE")]
    pub(crate) store_max_buffer_size: Option<String>,
    /// An hour partition with this many Parquet files is compacted into one (minimum 2)
    /// [default: 8].
    #[arg(long, env = "EDDY_STORE_COMPACT_MIN_FILES")]
    pub(crate) store_compact_min_files: Option<usize>,
    /// How far behind the watermark an event may arrive and still update its rollup window
    /// [default: 5m].
    #[arg(long, env = "EDDY_ALLOWED_LATENESS")]
    pub(crate) allowed_lateness: Option<String>,
    /// How long closed 1m, 1h and 1d rollup windows stay in memory after closing,
    /// comma-separated; older windows are read back from the rollup files when a query reaches
    /// them [default: 24h,7d,90d].
    #[arg(long, env = "EDDY_ROLLUP_HORIZONS", value_delimiter = ',')]
    pub(crate) rollup_horizons: Option<Vec<String>>,
    /// Most rollup windows kept in memory over all tenants (about 160 bytes each); beyond,
    /// closed windows leave memory before their horizon and are read from the rollup files.
    /// 0 = unlimited [default: 5000000].
    #[arg(long, env = "EDDY_ROLLUP_MEMORY_WINDOWS")]
    pub(crate) rollup_memory_windows: Option<usize>,
    /// Most (device, metric) series a tenant may hold in rollups; events adding more are
    /// rejected (400). 0 = unlimited [default: 100000].
    #[arg(long, env = "EDDY_MAX_SERIES_PER_TENANT")]
    pub(crate) max_series_per_tenant: Option<usize>,
    /// How often the stream processor checkpoints its rollups [default: 10s].
    #[arg(long, env = "EDDY_STREAM_CHECKPOINT_INTERVAL")]
    pub(crate) stream_checkpoint_interval: Option<String>,
    /// Browser origins allowed to open WebSockets besides the server's own, comma-separated
    /// (`https://dash.example.com`); `*` allows any [default: none].
    #[arg(long, env = "EDDY_WS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub(crate) ws_allowed_origins: Option<Vec<String>>,
    /// Per-attempt timeout of alert webhook deliveries [default: 5s].
    #[arg(long, env = "EDDY_WEBHOOK_TIMEOUT")]
    pub(crate) webhook_timeout: Option<String>,
    /// Attempts per alert webhook notification before it is dead-lettered [default: 6].
    #[arg(long, env = "EDDY_WEBHOOK_ATTEMPTS")]
    pub(crate) webhook_attempts: Option<u32>,
    /// Longest a query may run [default: 30s].
    #[arg(long, env = "EDDY_QUERY_TIMEOUT")]
    pub(crate) query_timeout: Option<String>,
    /// Most memory one query may use [default: 512MiB].
    #[arg(long, env = "EDDY_QUERY_MEMORY")]
    pub(crate) query_memory: Option<String>,
    /// Memory for the store files' digests, which serve summaries and top lists without
    /// scanning rows; 0 turns them off [default: 256MiB].
    #[arg(long, env = "EDDY_DIGEST_MEMORY")]
    pub(crate) digest_memory: Option<String>,
    /// Most rows one query may return [default: 100000].
    #[arg(long, env = "EDDY_MAX_RESULT_ROWS")]
    pub(crate) max_result_rows: Option<usize>,
    /// How old a cached answer of a repeated query (time series, rollups, SQL) may be; 0 turns
    /// the cache off [default: 1s].
    #[arg(long, env = "EDDY_QUERY_CACHE_STALENESS")]
    pub(crate) query_cache_staleness: Option<String>,
    /// How long in-flight requests get on shutdown [default: 30s].
    #[arg(long, env = "EDDY_SHUTDOWN_GRACE")]
    pub(crate) shutdown_grace: Option<String>,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http_addr: Option<String>,
    grpc_addr: Option<String>,
    admin_key: Option<String>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    max_body_size: Option<String>,
    max_decompressed_size: Option<String>,
    max_inflight_size: Option<String>,
    max_batch_events: Option<usize>,
    max_properties: Option<usize>,
    max_metrics: Option<usize>,
    max_string_len: Option<usize>,
    max_future_skew: Option<String>,
    dedup_window: Option<String>,
    dedup_max_entries: Option<usize>,
    default_retention: Option<String>,
    default_events_per_sec: Option<u32>,
    max_pipeline_lag: Option<String>,
    wal_segment_size: Option<String>,
    wal_queue_size: Option<String>,
    shutdown_grace: Option<String>,
    store_persist_size: Option<String>,
    store_persist_age: Option<String>,
    store_max_buffer_size: Option<String>,
    store_compact_min_files: Option<usize>,
    allowed_lateness: Option<String>,
    rollup_horizons: Option<Vec<String>>,
    rollup_memory_windows: Option<usize>,
    max_series_per_tenant: Option<usize>,
    stream_checkpoint_interval: Option<String>,
    ws_allowed_origins: Option<Vec<String>>,
    webhook_timeout: Option<String>,
    webhook_attempts: Option<u32>,
    query_timeout: Option<String>,
    query_memory: Option<String>,
    digest_memory: Option<String>,
    max_result_rows: Option<usize>,
    query_cache_staleness: Option<String>,
}

/// Fully resolved settings of `serve`.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) http_addr: SocketAddr,
    /// `None`: gRPC is off.
    pub(crate) grpc_addr: Option<SocketAddr>,
    pub(crate) grpc: eddy_grpc::GrpcConfig,
    pub(crate) log_format: LogFormat,
    pub(crate) log_level: String,
    pub(crate) server: eddy_server::ServerConfig,
    pub(crate) engines: EngineConfig,
}

/// Settings of the engines the binary composes (their `dir`s are derived from the data dir).
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    pub(crate) store: eddy_store::StoreConfig,
    pub(crate) stream: eddy_stream::StreamConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            store: eddy_store::StoreConfig::new(PathBuf::new()),
            stream: eddy_stream::StreamConfig::new(PathBuf::new()),
        }
    }
}

fn size(name: &str, v: &str, zero_ok: bool) -> Result<usize> {
    let b: ByteSize = v.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid {name} `{v}`: a size is a whole or decimal number with an optional unit, e.g. 16MiB, 512KiB, 2GB"
        )
    })?;
    let n =
        usize::try_from(b.as_u64()).with_context(|| format!("invalid {name} `{v}`: too large"))?;
    if n == 0 && !zero_ok {
        bail!("invalid {name} `{v}`: must be greater than 0");
    }
    Ok(n)
}

fn duration(name: &str, v: &str, zero_ok: bool) -> Result<Duration> {
    if v.trim() == "0" {
        if zero_ok {
            return Ok(Duration::ZERO);
        }
        bail!("invalid {name} `{v}`: must be greater than 0");
    }
    humantime::parse_duration(v.trim()).map_err(|_| {
        anyhow::anyhow!(
            "invalid {name} `{v}`: a duration is a number with a unit, e.g. 500ms, 10s, 1h, 30d"
        )
    })
}

/// A listen address: `ip:port`, or `host:port` with a host that resolves (an IPv4 address is
/// preferred, so `localhost:8080` is reachable as 127.0.0.1 too).
fn listen_addr(s: &str, name: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.trim().parse() {
        return Ok(a);
    }
    let bad = |why: String| {
        anyhow::anyhow!("invalid {name} `{s}`: {why} (e.g. 127.0.0.1:8080 or localhost:8080)")
    };
    let (host, port) = s
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| bad("use host:port".into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(format!("the port `{port}` is not a number from 0 to 65535")))?;
    let addrs: Vec<SocketAddr> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|_| bad(format!("the host `{host}` does not resolve")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| bad(format!("the host `{host}` has no address")))
}

fn positive(name: &str, v: usize) -> Result<usize> {
    if v == 0 {
        bail!("invalid {name}: must be greater than 0");
    }
    Ok(v)
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl ServeArgs {
    /// Resolves flags/env over the file over defaults, validating every value.
    pub(crate) fn resolve(self) -> Result<Settings> {
        let file = match &self.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        let admin_key = std::env::var("EDDY_ADMIN_KEY")
            .ok()
            .filter(|s| !s.is_empty())
            .or(file.admin_key);
        if let Some(k) = &admin_key {
            if k.chars().count() < 32 {
                bail!(
                    "invalid EDDY_ADMIN_KEY: must be at least 32 characters (it is {})",
                    k.chars().count()
                );
            }
            if k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("invalid EDDY_ADMIN_KEY: must not contain whitespace or control characters");
            }
        }
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let addr_s = self
            .http_addr
            .or(file.http_addr)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let http_addr = listen_addr(&addr_s, "--http-addr / EDDY_HTTP_ADDR")?;
        let grpc_s = self
            .grpc_addr
            .or(file.grpc_addr)
            .unwrap_or_else(|| "127.0.0.1:50051".into());
        let grpc_addr = if grpc_s.trim().is_empty() {
            None
        } else {
            Some(listen_addr(&grpc_s, "--grpc-addr / EDDY_GRPC_ADDR")?)
        };
        let mut c = eddy_server::ServerConfig::new(data_dir);
        let mut store = eddy_store::StoreConfig::new(PathBuf::new());
        let mut stream = eddy_stream::StreamConfig::new(PathBuf::new());
        c.admin_key = admin_key;
        if let Some(v) = self.max_body_size.or(file.max_body_size) {
            c.max_body_bytes = size("--max-body-size / EDDY_MAX_BODY_SIZE", &v, false)?;
        }
        if let Some(v) = self.max_decompressed_size.or(file.max_decompressed_size) {
            c.max_decompressed_bytes = size(
                "--max-decompressed-size / EDDY_MAX_DECOMPRESSED_SIZE",
                &v,
                false,
            )?;
        }
        if let Some(v) = self.max_inflight_size.or(file.max_inflight_size) {
            c.max_inflight_bytes = size("--max-inflight-size / EDDY_MAX_INFLIGHT_SIZE", &v, false)?;
        }
        if let Some(v) = self.max_batch_events.or(file.max_batch_events) {
            c.max_batch_events = positive("--max-batch-events / EDDY_MAX_BATCH_EVENTS", v)?;
        }
        if let Some(v) = self.max_properties.or(file.max_properties) {
            c.limits.max_properties = v;
        }
        if let Some(v) = self.max_metrics.or(file.max_metrics) {
            c.limits.max_metrics = v;
        }
        if let Some(v) = self.max_string_len.or(file.max_string_len) {
            c.limits.max_string_len = positive("--max-string-len / EDDY_MAX_STRING_LEN", v)?;
        }
        if let Some(v) = self.max_future_skew.or(file.max_future_skew) {
            c.limits.max_future_skew_ns = ns(duration(
                "--max-future-skew / EDDY_MAX_FUTURE_SKEW",
                &v,
                true,
            )?);
        }
        if let Some(v) = self.dedup_window.or(file.dedup_window) {
            c.dedup_window = duration("--dedup-window / EDDY_DEDUP_WINDOW", &v, true)?;
        }
        if let Some(v) = self.dedup_max_entries.or(file.dedup_max_entries) {
            c.dedup_max_entries = v;
        }
        if let Some(v) = self.default_retention.or(file.default_retention) {
            c.default_retention =
                duration("--default-retention / EDDY_DEFAULT_RETENTION", &v, true)?;
        }
        if let Some(v) = self.default_events_per_sec.or(file.default_events_per_sec) {
            c.default_events_per_sec = v;
        }
        if let Some(v) = self.max_pipeline_lag.or(file.max_pipeline_lag) {
            c.max_pipeline_lag = duration("--max-pipeline-lag / EDDY_MAX_PIPELINE_LAG", &v, true)?;
        }
        if let Some(v) = self.wal_segment_size.or(file.wal_segment_size) {
            c.wal_segment_bytes =
                size("--wal-segment-size / EDDY_WAL_SEGMENT_SIZE", &v, false)? as u64;
        }
        if let Some(v) = self.wal_queue_size.or(file.wal_queue_size) {
            c.wal_queue_bytes = size("--wal-queue-size / EDDY_WAL_QUEUE_SIZE", &v, false)?;
        }
        if let Some(v) = self.shutdown_grace.or(file.shutdown_grace) {
            c.shutdown_grace = duration("--shutdown-grace / EDDY_SHUTDOWN_GRACE", &v, true)?;
        }
        if let Some(v) = self.store_persist_size.or(file.store_persist_size) {
            store.persist_bytes =
                size("--store-persist-size / EDDY_STORE_PERSIST_SIZE", &v, false)?;
        }
        if let Some(v) = self.store_persist_age.or(file.store_persist_age) {
            store.persist_age =
                duration("--store-persist-age / EDDY_STORE_PERSIST_AGE", &v, false)?;
        }
        if let Some(v) = self.store_max_buffer_size.or(file.store_max_buffer_size) {
            store.max_buffer_bytes = size(
                "--store-max-buffer-size / EDDY_STORE_MAX_BUFFER_SIZE",
                &v,
                false,
            )?;
        }
        if let Some(v) = self
            .store_compact_min_files
            .or(file.store_compact_min_files)
        {
            if v < 2 {
                bail!(
                    "invalid --store-compact-min-files / EDDY_STORE_COMPACT_MIN_FILES: must be at least 2, got {v}"
                );
            }
            store.compact_min_files = v;
        }
        if let Some(v) = self.allowed_lateness.or(file.allowed_lateness) {
            stream.allowed_lateness =
                duration("--allowed-lateness / EDDY_ALLOWED_LATENESS", &v, true)?;
        }
        // Digests count late events the way summaries ask: with the allowed lateness.
        store.late_after_ns = stream.lateness_ns();
        if let Some(v) = self.rollup_horizons.or(file.rollup_horizons) {
            const NAME: &str = "--rollup-horizons / EDDY_ROLLUP_HORIZONS";
            if v.len() != 3 {
                bail!(
                    "invalid {NAME}: give three durations for 1m, 1h and 1d windows (e.g. 24h,7d,90d), got {}",
                    v.len()
                );
            }
            for (slot, d) in stream.horizon.iter_mut().zip(&v) {
                *slot = duration(NAME, d, true)?;
            }
        }
        if let Some(v) = self.rollup_memory_windows.or(file.rollup_memory_windows) {
            stream.max_windows = v;
        }
        if let Some(v) = self.max_series_per_tenant.or(file.max_series_per_tenant) {
            stream.max_series_per_tenant = v;
        }
        if let Some(v) = self
            .stream_checkpoint_interval
            .or(file.stream_checkpoint_interval)
        {
            stream.checkpoint_interval = duration(
                "--stream-checkpoint-interval / EDDY_STREAM_CHECKPOINT_INTERVAL",
                &v,
                false,
            )?;
        }
        if let Some(v) = self.ws_allowed_origins.or(file.ws_allowed_origins) {
            c.ws_allowed_origins = v
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect();
        }
        if let Some(v) = self.webhook_timeout.or(file.webhook_timeout) {
            c.webhook_timeout = duration("--webhook-timeout / EDDY_WEBHOOK_TIMEOUT", &v, false)?;
        }
        if let Some(v) = self.webhook_attempts.or(file.webhook_attempts) {
            c.webhook_attempts = u32::try_from(positive(
                "--webhook-attempts / EDDY_WEBHOOK_ATTEMPTS",
                v as usize,
            )?)
            .unwrap_or(u32::MAX);
        }
        if let Some(v) = self.query_timeout.or(file.query_timeout) {
            store.query_timeout = duration("--query-timeout / EDDY_QUERY_TIMEOUT", &v, false)?;
        }
        if let Some(v) = self.query_memory.or(file.query_memory) {
            store.query_memory_bytes = size("--query-memory / EDDY_QUERY_MEMORY", &v, false)?;
        }
        if let Some(v) = self.digest_memory.or(file.digest_memory) {
            store.digest_memory_bytes = size("--digest-memory / EDDY_DIGEST_MEMORY", &v, true)?;
        }
        if let Some(v) = self.query_cache_staleness.or(file.query_cache_staleness) {
            c.query_cache_staleness = duration(
                "--query-cache-staleness / EDDY_QUERY_CACHE_STALENESS",
                &v,
                true,
            )?;
        }
        if let Some(v) = self.max_result_rows.or(file.max_result_rows) {
            store.max_result_rows = positive("--max-result-rows / EDDY_MAX_RESULT_ROWS", v)?;
        }
        if c.max_decompressed_bytes < c.max_body_bytes {
            bail!("invalid --max-decompressed-size: must be at least --max-body-size");
        }
        let grpc = eddy_grpc::GrpcConfig {
            max_message_bytes: c.max_body_bytes,
            shutdown_grace: c.shutdown_grace,
            max_inflight_bytes: c.max_inflight_bytes,
            ..eddy_grpc::GrpcConfig::default()
        };
        Ok(Settings {
            http_addr,
            grpc_addr,
            grpc,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            log_level: self
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            server: c,
            engines: EngineConfig { store, stream },
        })
    }
}

fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --config file {}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid --config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `args` are refused with an error that names `setting`.
    fn refused(args: ServeArgs, setting: &str) {
        let e = args.resolve().unwrap_err().to_string();
        assert!(e.contains(setting), "{e}");
    }

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/eddy.example.toml");
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.grpc_addr.unwrap().to_string(), "127.0.0.1:50051");
        assert_eq!(s.server.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(s.server.dedup_window, Duration::from_secs(86_400));
        assert_eq!(s.engines.store.digest_memory_bytes, 256 << 20);
    }

    #[test]
    fn an_empty_grpc_address_turns_grpc_off() {
        let off = ServeArgs {
            grpc_addr: Some(String::new()),
            ..Default::default()
        };
        assert!(off.resolve().unwrap().grpc_addr.is_none());
        let bad = ServeArgs {
            grpc_addr: Some("localhost:eighty".into()),
            ..Default::default()
        };
        let e = bad.resolve().unwrap_err().to_string();
        assert!(e.contains("--grpc-addr / EDDY_GRPC_ADDR"), "{e}");
    }

    #[test]
    fn zero_sizes_only_where_zero_means_off() {
        let off = ServeArgs {
            digest_memory: Some("0".into()),
            allowed_lateness: Some("2m".into()),
            ..Default::default()
        };
        let s = off.resolve().unwrap();
        assert_eq!(s.engines.store.digest_memory_bytes, 0);
        // Digests count late events with the stream processor's allowed lateness.
        assert_eq!(s.engines.store.late_after_ns, 120_000_000_000);
        refused(
            ServeArgs {
                query_memory: Some("0".into()),
                ..Default::default()
            },
            "EDDY_QUERY_MEMORY",
        );
    }

    #[test]
    fn every_serve_flag_shows_its_default_in_help() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let mut seen = 0;
        for a in serve.get_arguments() {
            if matches!(a.get_id().as_str(), "help" | "version") {
                continue;
            }
            seen += 1;
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("[default:"),
                "--{} shows no default: {help}",
                a.get_id()
            );
        }
        assert!(seen > 30, "{seen}");
        assert!(
            cli.get_after_help()
                .unwrap()
                .to_string()
                .contains("EDDY_ADMIN_KEY")
        );
    }

    #[test]
    fn host_names_are_accepted_as_listen_addresses() {
        let s = ServeArgs {
            http_addr: Some("localhost:8081".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(s.http_addr.port(), 8081);
        assert!(s.http_addr.ip().is_loopback(), "{}", s.http_addr);
    }

    #[test]
    fn bad_values_name_the_setting() {
        refused(
            ServeArgs {
                http_addr: Some("nope".into()),
                ..Default::default()
            },
            "EDDY_HTTP_ADDR",
        );
        refused(
            ServeArgs {
                max_body_size: Some("lots".into()),
                ..Default::default()
            },
            "EDDY_MAX_BODY_SIZE",
        );
        // Eddy's words, not the parsing library's.
        let e = ServeArgs {
            max_body_size: Some("lots".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a size is a whole or decimal number") && !e.contains("ByteSize"),
            "{e}"
        );
        for (addr, says) in [
            ("localhost:eighty", "the port `eighty`"),
            ("8080", "use host:port"),
        ] {
            let e = ServeArgs {
                http_addr: Some(addr.into()),
                ..Default::default()
            }
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("EDDY_HTTP_ADDR") && e.contains(says),
                "{addr}: {e}"
            );
        }
        refused(
            ServeArgs {
                dedup_window: Some("forever".into()),
                ..Default::default()
            },
            "EDDY_DEDUP_WINDOW",
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "http_adr = \"x\"").unwrap();
        let bad = ServeArgs {
            config: Some(p),
            ..Default::default()
        };
        assert!(bad.resolve().unwrap_err().to_string().contains("http_adr"));
    }
}
