//! The embedded store: a named log consumer that keeps recent events in Arrow buffers (visible
//! to queries at once) and persists them to Parquet, and the DataFusion sessions queries run in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use eddy_log::Log;
use eddy_model::{Entry, codec};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tokio::sync::watch;

use crate::digest::{self, Digest, Digests};
use crate::error::io;
use crate::manifest::{FileMeta, Manifest, Table, sync_dir};
use crate::sample_digest::{SampleDigest, SampleFold};
use crate::schema::{BatchBuilder, events_schema, samples_schema};
use crate::{Error, Result};

/// Name of the store's log consumer.
pub const CONSUMER: &str = "store";
const HOUR_NS: i64 = 3_600_000_000_000;

/// Who decides what has expired: per-tenant retention and the clock (injectable for tests).
pub trait RetentionPolicy: Send + Sync + std::fmt::Debug {
    /// Retention of `tenant` in ns; 0 keeps forever.
    fn retention_ns(&self, tenant: &str) -> i64;
    /// Now, ns since the epoch.
    fn now_ns(&self) -> i64;
}

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the manifest and the Parquet files.
    pub dir: PathBuf,
    /// Persist once this many bytes are buffered.
    pub persist_bytes: usize,
    /// Persist once the oldest buffered row is this old.
    pub persist_age: Duration,
    /// The writer stops consuming the log while this many bytes are buffered (persisting
    /// included); ingest sees the growing lag and answers 503.
    pub max_buffer_bytes: usize,
    /// Ingest answers 503 while the store is this many records behind the log.
    pub max_lag_records: u64,
    /// Per-query limits.
    pub query_timeout: Duration,
    pub query_memory_bytes: usize,
    pub max_result_rows: usize,
    /// Threads of the query runtime (kept apart from ingest's).
    pub query_threads: usize,
    /// How often expired partitions are looked for.
    pub retention_interval: Duration,
    /// An hour partition with at least this many files is compacted into one.
    pub compact_min_files: usize,
    /// Memory for the files' digests (summaries and top lists without scanning rows); 0 keeps
    /// none.
    pub digest_memory_bytes: usize,
    /// An event received more than this after its time counts as late in digests (the stream
    /// processor's allowed lateness; a summary asking with another lateness scans rows).
    pub late_after_ns: i64,
}

impl StoreConfig {
    /// Defaults for a directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            persist_bytes: 64 << 20,
            persist_age: Duration::from_secs(60),
            max_buffer_bytes: 512 << 20,
            max_lag_records: 5_000_000,
            query_timeout: Duration::from_secs(30),
            query_memory_bytes: 512 << 20,
            max_result_rows: 100_000,
            query_threads: 2,
            retention_interval: Duration::from_secs(60),
            compact_min_files: 8,
            digest_memory_bytes: 256 << 20,
            late_after_ns: 300_000_000_000,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Buffer {
    events: Vec<RecordBatch>,
    samples: Vec<RecordBatch>,
    bytes: usize,
}

impl Buffer {
    fn add(&mut self, events: RecordBatch, samples: RecordBatch) {
        self.bytes += events.get_array_memory_size() + samples.get_array_memory_size();
        if events.num_rows() > 0 {
            self.events.push(events);
        }
        if samples.num_rows() > 0 {
            self.samples.push(samples);
        }
    }
}

#[derive(Debug)]
struct State {
    active: HashMap<String, Buffer>,
    persisting: HashMap<String, Buffer>,
    manifest: Arc<Manifest>,
    active_since: Option<Instant>,
    /// Every record below this offset is in a buffer or a file.
    applied: u64,
}

impl State {
    fn buffered_bytes(&self) -> usize {
        self.active
            .values()
            .chain(self.persisting.values())
            .map(|b| b.bytes)
            .sum()
    }
}

/// What a query of one tenant sees: its files and buffered batches at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub events_files: Vec<PathBuf>,
    pub samples_files: Vec<PathBuf>,
    pub events: Vec<RecordBatch>,
    pub samples: Vec<RecordBatch>,
}

/// Counters of the store for `/stats` and `/lag`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStats {
    pub applied_offset: u64,
    pub persisted_offset: u64,
    pub buffered_bytes: usize,
    pub files: usize,
    pub file_bytes: u64,
}

/// The embedded Arrow/Parquet/DataFusion store.
#[derive(Debug)]
pub struct EmbeddedStore {
    config: StoreConfig,
    log: Arc<dyn Log>,
    state: RwLock<State>,
    query_rt: QueryRuntime,
    shutdown: watch::Sender<bool>,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    retention: std::sync::Mutex<Option<Arc<dyn RetentionPolicy>>>,
    /// Files already out of the manifest, unlinked once no query can still be reading them.
    retired: std::sync::Mutex<Vec<(Instant, PathBuf)>>,
    /// Parquet footers and file statistics, shared by every query's session (each has its own
    /// runtime for its memory limit, which would otherwise start with empty caches). Files
    /// never change under a name, and entries are checked against size and mtime.
    caches: SharedCaches,
    /// Digests of the events files (see [`crate::digest`]).
    digests: Arc<Digests>,
    /// Retention passes of the writer loop so far (tests synchronise on it).
    retention_passes: std::sync::atomic::AtomicU64,
    /// Set once the background build of missing digests after a start has ended.
    digests_rebuilt: std::sync::atomic::AtomicBool,
}

/// See [`EmbeddedStore`]'s `caches`.
struct SharedCaches(datafusion::execution::cache::cache_manager::CacheManagerConfig);

impl std::fmt::Debug for SharedCaches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCaches")
    }
}

/// A dedicated runtime for queries, so a heavy query does not starve ingest.
#[derive(Debug)]
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn poisoned() -> Error {
    Error::Task("store state lock poisoned".into())
}

impl EmbeddedStore {
    /// Opens the store: loads the manifest, removes orphan files, registers the log consumer.
    /// Call [`EmbeddedStore::start`] to begin consuming.
    pub fn open(config: StoreConfig, log: Arc<dyn Log>) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&config.dir).map_err(io(&config.dir))?;
        let manifest = Manifest::load(&config.dir)?;
        remove_orphans(&config.dir, &manifest)?;
        let committed = log.register_consumer(CONSUMER)?;
        // The manifest is authoritative; the consumer offset only lets the log delete segments.
        if committed > manifest.persisted_offset || log.start_offset() > manifest.persisted_offset {
            return Err(Error::LogGap {
                needed: manifest.persisted_offset,
                start: log.start_offset().max(committed),
            });
        }
        let query_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.query_threads.max(1))
            .thread_name("eddy-query")
            .enable_all()
            .build()
            .map_err(|e| Error::Task(format!("cannot start the query runtime: {e}")))?;
        let (shutdown, _) = watch::channel(false);
        let applied = manifest.persisted_offset;
        Ok(Arc::new(Self {
            state: RwLock::new(State {
                active: HashMap::new(),
                persisting: HashMap::new(),
                manifest: Arc::new(manifest),
                active_since: None,
                applied,
            }),
            log,
            query_rt: QueryRuntime(Some(query_rt)),
            shutdown,
            writer: std::sync::Mutex::new(None),
            retention: std::sync::Mutex::new(None),
            retired: std::sync::Mutex::new(Vec::new()),
            caches: shared_caches()?,
            digests: Arc::new(Digests::new(config.digest_memory_bytes)),
            retention_passes: std::sync::atomic::AtomicU64::new(0),
            digests_rebuilt: std::sync::atomic::AtomicBool::new(false),
            config,
        }))
    }

    /// Sets who decides retention; without one nothing expires.
    pub fn set_retention(&self, policy: Arc<dyn RetentionPolicy>) {
        if let Ok(mut r) = self.retention.lock() {
            *r = Some(policy);
        }
    }

    /// Deletes every persisted hour partition whose newest row is older than its tenant's
    /// retention. Runs in the writer loop, never beside a persist (whose manifest would
    /// otherwise bring the files back). Returns how many files went.
    fn enforce_retention(&self) -> Result<usize> {
        let Some(policy) = self.retention.lock().ok().and_then(|r| r.clone()) else {
            return Ok(0);
        };
        let now = policy.now_ns();
        let mut horizons: HashMap<String, i64> = HashMap::new();
        let doomed = {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            let mut m = (*st.manifest).clone();
            let (gone, kept): (Vec<_>, Vec<_>) = m.files.into_iter().partition(|f| {
                let horizon = *horizons.entry(f.tenant.clone()).or_insert_with(|| {
                    match policy.retention_ns(&f.tenant) {
                        0 => i64::MIN,
                        r => now.saturating_sub(r),
                    }
                });
                f.max_time < horizon
            });
            m.files = kept;
            if gone.is_empty() {
                return Ok(0);
            }
            m.save(&self.config.dir)?;
            self.install(&mut st, m, vec![]);
            gone
        };
        self.retire(doomed.iter().map(|f| self.config.dir.join(&f.path)));
        metrics::counter!("eddy_store_expired_files_total").increment(doomed.len() as u64);
        tracing::info!(files = doomed.len(), "retention deleted expired partitions");
        Ok(doomed.len())
    }

    /// Merges the files of one (tenant, table, hour) partition that has at least
    /// `compact_min_files` of them into one file. Crash-safe: the new file is written and
    /// fsynced first, then the manifest swaps atomically; the old files are retired. Returns
    /// whether it compacted something.
    async fn compact_once(&self) -> Result<bool> {
        let group: Vec<FileMeta> = {
            let st = self.state.read().map_err(|_| poisoned())?;
            let mut groups: HashMap<(&str, Table, i64), Vec<&FileMeta>> = HashMap::new();
            for f in &st.manifest.files {
                groups
                    .entry((f.tenant.as_str(), f.table, f.hour))
                    .or_default()
                    .push(f);
            }
            match groups
                .into_values()
                .find(|g| g.len() >= self.config.compact_min_files.max(2))
            {
                Some(g) => g.into_iter().cloned().collect(),
                None => return Ok(false),
            }
        };
        let dir = self.config.dir.clone();
        let inputs = group.clone();
        let digests = self.digests.clone();
        let late = self.config.late_after_ns;
        let (merged, built) =
            tokio::task::spawn_blocking(move || merge_files(&dir, &inputs, &digests, late))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        let old: std::collections::HashSet<&str> = group.iter().map(|f| f.path.as_str()).collect();
        {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            let mut m = (*st.manifest).clone();
            m.files.retain(|f| !old.contains(f.path.as_str()));
            m.files.push(merged);
            m.save(&self.config.dir)?;
            self.install(&mut st, m, built);
        }
        self.retire(group.iter().map(|f| self.config.dir.join(&f.path)));
        metrics::counter!("eddy_store_compactions_total").increment(1);
        tracing::debug!(files = group.len(), "compacted a partition");
        Ok(true)
    }

    /// Queues files that left the manifest for deletion once every query that may have listed
    /// them is over (the query timeout, plus a margin). A crash meanwhile leaves orphans, which
    /// opening removes.
    fn retire(&self, paths: impl Iterator<Item = PathBuf>) {
        let due = Instant::now() + self.config.query_timeout + Duration::from_secs(1);
        if let Ok(mut r) = self.retired.lock() {
            r.extend(paths.map(|p| (due, p)));
        }
    }

    /// Unlinks retired files whose grace period is over.
    fn reap_retired(&self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = match self.retired.lock() {
            Ok(mut r) => {
                let (due, keep): (Vec<_>, Vec<_>) = r.drain(..).partition(|(t, _)| *t <= now);
                *r = keep;
                due.into_iter().map(|(_, p)| p).collect()
            }
            Err(_) => return,
        };
        for path in due {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a retired file");
            }
            // Empty hour, table and tenant directories go too; a non-empty one stays.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != self.config.dir.as_path()) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }

    /// Starts the writer task on the current runtime.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = me.run_writer().await {
                tracing::error!(error = %e, "store writer stopped");
            }
        });
        if let Ok(mut w) = self.writer.lock() {
            *w = Some(handle);
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.build_missing_digests();
            me.digests_rebuilt
                .store(true, std::sync::atomic::Ordering::Release);
        });
    }

    /// Builds the digests of listed files that have none (after a restart), newest first,
    /// until the budget is full or the store stops. Queries scan those files meanwhile.
    fn build_missing_digests(&self) {
        let mut files: Vec<FileMeta> = match self.state.read() {
            Ok(st) => st.manifest.files.clone(),
            Err(_) => return,
        };
        files.sort_by_key(|f| std::cmp::Reverse(f.hour));
        let (start, mut built) = (Instant::now(), 0);
        for f in files {
            if *self.shutdown.borrow() || !self.digests.enabled() {
                return;
            }
            if self.digests.file(&f.path).is_some() {
                continue;
            }
            let b = match digest::build_from_file(
                &self.digests,
                &self.config.dir,
                &f,
                self.config.late_after_ns,
            ) {
                Ok(Some(b)) => b,
                Ok(None) => return,
                // Compacted or expired meanwhile, or unreadable: queries scan what is listed.
                Err(e) => {
                    tracing::debug!(file = f.path, error = %e, "no digest for a file");
                    continue;
                }
            };
            // Under the state lock, so the file cannot leave the manifest between the check
            // and the insert (installing a manifest drops digests under the write lock).
            let Ok(st) = self.state.read() else { return };
            if !st.manifest.files.iter().any(|m| m.path == f.path) {
                continue;
            }
            if self.digests.insert(b.path, b.hour, b.digest).is_err()
                || self.digests.file(&f.path).is_none()
            {
                // Over the budget: older files would only evict themselves.
                break;
            }
            built += 1;
        }
        tracing::info!(
            files = built,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "file digests built"
        );
    }

    /// Stops the writer after persisting what it holds.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let handle = match self.writer.lock() {
            Ok(mut w) => w.take(),
            Err(_) => {
                tracing::error!(
                    "store writer state is poisoned: the final persist is skipped; the log keeps the unpersisted events and the next start replays them"
                );
                return;
            }
        };
        if let Some(h) = handle
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "store writer ended abnormally before its final persist; the next start replays the unpersisted events from the log");
        }
    }

    /// Stops the writer at once, persisting nothing: what a crash does (tests).
    #[doc(hidden)]
    pub async fn crash(&self) {
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
    }

    /// The offset up to which events are queryable.
    pub fn applied_offset(&self) -> u64 {
        self.state.read().map(|s| s.applied).unwrap_or(0)
    }

    /// True when ingest should pause: the store is too far behind the log.
    pub fn overloaded(&self) -> bool {
        self.log.end_offset().saturating_sub(self.applied_offset()) > self.config.max_lag_records
    }

    /// Counters for operators.
    pub fn stats(&self) -> StoreStats {
        let s = self.state.read();
        match s {
            Ok(s) => StoreStats {
                applied_offset: s.applied,
                persisted_offset: s.manifest.persisted_offset,
                buffered_bytes: s.buffered_bytes(),
                files: s.manifest.files.len(),
                file_bytes: s.manifest.files.iter().map(|f| f.bytes).sum(),
            },
            Err(_) => StoreStats {
                applied_offset: 0,
                persisted_offset: 0,
                buffered_bytes: 0,
                files: 0,
                file_bytes: 0,
            },
        }
    }

    /// The most files any one (tenant, table, hour) partition has (tests).
    #[doc(hidden)]
    pub fn max_files_per_partition(&self) -> usize {
        let Ok(st) = self.state.read() else { return 0 };
        let mut groups: HashMap<(&str, Table, i64), usize> = HashMap::new();
        for f in &st.manifest.files {
            *groups
                .entry((f.tenant.as_str(), f.table, f.hour))
                .or_default() += 1;
        }
        groups.into_values().max().unwrap_or(0)
    }

    /// Files the manifest lists for `tenant` (tests).
    #[doc(hidden)]
    pub fn stats_files_of(&self, tenant: &str) -> usize {
        self.state
            .read()
            .map(|s| {
                s.manifest
                    .files
                    .iter()
                    .filter(|f| f.tenant == tenant)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Files that have a digest (tests).
    #[doc(hidden)]
    pub fn digested_files(&self) -> usize {
        self.digests.len()
    }

    /// Retention passes the writer has made since the store opened (tests).
    #[doc(hidden)]
    pub fn retention_passes(&self) -> u64 {
        self.retention_passes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the background build of missing digests after the start has ended (tests).
    #[doc(hidden)]
    pub fn digest_rebuild_finished(&self) -> bool {
        self.digests_rebuilt
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// True when a directory for `tenant` exists in the store (tests).
    #[doc(hidden)]
    pub fn dir_has(&self, tenant: &str) -> bool {
        self.config.dir.join(tenant).exists()
    }

    /// The limits queries run under.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// What `tenant` has in `[from, to)` right now.
    pub fn snapshot(&self, tenant: &str, from: i64, to: i64) -> Result<Snapshot> {
        let s = self.state.read().map_err(|_| poisoned())?;
        let paths = |t: Table| {
            s.manifest
                .files_for(tenant, t, from, to)
                .map(|f| self.config.dir.join(&f.path))
                .collect::<Vec<_>>()
        };
        let mut snap = Snapshot {
            events_files: paths(Table::Events),
            samples_files: paths(Table::MetricSamples),
            events: vec![],
            samples: vec![],
        };
        for b in [s.persisting.get(tenant), s.active.get(tenant)]
            .into_iter()
            .flatten()
        {
            snap.events.extend(b.events.iter().cloned());
            snap.samples.extend(b.samples.iter().cloned());
        }
        Ok(snap)
    }

    /// What `tenant`'s events in `[from, to)` add up to, as one digest: the digests of the files
    /// wholly inside the range (counted with `late_after_ns`) merged with a scan of the rest
    /// (files across an edge or without a digest, and the buffers). Only the `part` the question
    /// needs. Runs as a query.
    pub(crate) async fn digest(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        late_after_ns: i64,
        part: digest::Part,
    ) -> Result<Digest> {
        let mut buckets = self
            .digest_buckets(tenant, from, to, late_after_ns, None, part)
            .await?;
        Ok(buckets
            .pop()
            .map_or_else(|| Digest::new(late_after_ns), |(_, d)| d))
    }

    /// `plan` with its aggregate answered from digests, when it is one they answer (see
    /// [`crate::digest_sql`]) and they hold most of its range; `None`: run `plan` as it is.
    pub(crate) async fn digest_plan(
        self: &Arc<Self>,
        tenant: &str,
        ctx: &SessionContext,
        plan: &datafusion::logical_expr::LogicalPlan,
    ) -> Result<Option<datafusion::logical_expr::LogicalPlan>> {
        use crate::digest_sql::{DigestAggregate, Needs};
        let late = self.config.late_after_ns;
        let events = ctx.table_provider("events").await?;
        let samples = ctx.table_provider("metric_samples").await?;
        let (events, samples) = (events.get_logical_plan(), samples.get_logical_plan());
        let Some(agg) =
            DigestAggregate::find(&ctx.state(), plan, events.as_deref(), samples.as_deref())
        else {
            return Ok(None);
        };
        let (from, to) = agg.range();
        let answered = match agg.needs() {
            Needs::Events(part) => {
                if !self.digests_cover_most(tenant, Table::Events, from, to, late)? {
                    return Ok(None);
                }
                let digest = self.digest(tenant, from, to, late, part).await?;
                agg.answer_events(&digest)?
            }
            Needs::Samples => {
                if !self.digests_cover_most(tenant, Table::MetricSamples, from, to, late)? {
                    return Ok(None);
                }
                agg.answer_samples(&self.sample_digests(tenant, from, to).await?)?
            }
        };
        if answered.is_some() {
            metrics::counter!("eddy_sql_digest_answers_total").increment(1);
        }
        Ok(answered)
    }

    /// Whether digests hold most of `tenant`'s persisted rows of `table` in `[from, to)`: at
    /// least 7/8 of the rows of its files are in files wholly inside the range with a digest
    /// (events digests counted with `late_after_ns`). Otherwise folding the rest row by row
    /// into a digest costs more than a DataFusion aggregation would.
    pub(crate) fn digests_cover_most(
        &self,
        tenant: &str,
        table: Table,
        from: i64,
        to: i64,
        late_after_ns: i64,
    ) -> Result<bool> {
        let s = self.state.read().map_err(|_| poisoned())?;
        let (mut digested, mut total) = (0u64, 0u64);
        for f in s.manifest.files_for(tenant, table, from, to) {
            total += f.rows;
            let inside = f.min_time >= from && f.max_time < to;
            let usable = match self.digests.file(&f.path) {
                Some(digest::FileDigest::Events(d)) => d.late_after_ns() == late_after_ns,
                Some(digest::FileDigest::Samples(_)) => true,
                None => false,
            };
            if inside && usable {
                digested += f.rows;
            }
        }
        Ok(digested > 0 && digested.saturating_mul(8) >= total.saturating_mul(7))
    }

    /// `tenant`'s files of `table` in `[from, to)` split into the digests `usable` takes of
    /// those wholly inside the range, and a snapshot of the rest (files across an edge or
    /// without a usable digest) with the table's buffers, to be folded row by row.
    fn split_digested<T>(
        &self,
        tenant: &str,
        table: Table,
        from: i64,
        to: i64,
        usable: impl Fn(&FileMeta, digest::FileDigest) -> Option<T>,
    ) -> Result<(Vec<T>, Snapshot)> {
        let s = self.state.read().map_err(|_| poisoned())?;
        let mut kept = Vec::new();
        let mut rest = Snapshot {
            events_files: vec![],
            samples_files: vec![],
            events: vec![],
            samples: vec![],
        };
        let (files, buffered) = match table {
            Table::Events => (&mut rest.events_files, &mut rest.events),
            Table::MetricSamples => (&mut rest.samples_files, &mut rest.samples),
        };
        for f in s.manifest.files_for(tenant, table, from, to) {
            let inside = f.min_time >= from && f.max_time < to;
            match self
                .digests
                .file(&f.path)
                .filter(|_| inside)
                .and_then(|d| usable(f, d))
            {
                Some(d) => kept.push(d),
                None => files.push(self.config.dir.join(&f.path)),
            }
        }
        for b in [s.persisting.get(tenant), s.active.get(tenant)]
            .into_iter()
            .flatten()
        {
            buffered.extend(match table {
                Table::Events => b.events.iter().cloned(),
                Table::MetricSamples => b.samples.iter().cloned(),
            });
        }
        metrics::counter!("eddy_store_digest_files_total", "use" => "digest")
            .increment(kept.len() as u64);
        metrics::counter!("eddy_store_digest_files_total", "use" => "scan")
            .increment(files.len() as u64);
        Ok((kept, rest))
    }

    /// The samples digests of `tenant`'s metric samples in `[from, to)`: those of the files
    /// wholly inside the range, and one folded from the rest (files across an edge or without
    /// a digest, and the buffers). Runs as a query.
    pub(crate) async fn sample_digests(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Arc<SampleDigest>>> {
        let (mut kept, rest) =
            self.split_digested(tenant, Table::MetricSamples, from, to, |_, d| match d {
                digest::FileDigest::Samples(d) => Some(d),
                digest::FileDigest::Events(_) => None,
            })?;
        if rest.samples_files.is_empty() && rest.samples.is_empty() {
            return Ok(kept);
        }
        let store = Arc::clone(self);
        self.run_query(async move {
            let ctx = store.session_of(rest, Scan::Selective).await?;
            let mut rows = ctx
                .table("metric_samples")
                .await?
                .filter(crate::exprs::in_range(from, to))?
                .select_columns(&crate::sample_digest::COLUMNS)?
                .execute_stream()
                .await?;
            let mut fold = SampleFold::default();
            while let Some(b) = futures_util::StreamExt::next(&mut rows).await {
                fold.add(&b?)?;
            }
            kept.push(Arc::new(fold.finish()));
            Ok(kept)
        })
        .await
    }

    /// Like [`EmbeddedStore::digest`], one digest per bucket of `bucket_ns` from the epoch (a
    /// multiple of an hour, so a file's hour lies in one bucket), in bucket order; `None`: one
    /// bucket for the whole range. Buckets without events are left out.
    pub(crate) async fn digest_buckets(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        late_after_ns: i64,
        bucket_ns: Option<i64>,
        part: digest::Part,
    ) -> Result<Vec<(i64, Digest)>> {
        let bucket_of = digest::bucketing(bucket_ns)?;
        let (kept, rest) =
            self.split_digested(tenant, Table::Events, from, to, |f, d| match d {
                digest::FileDigest::Events(d) if d.late_after_ns() == late_after_ns => {
                    Some((bucket_of(f.hour), d))
                }
                _ => None,
            })?;
        // Ids must come from the tenant's dictionary only when they meet digests' ids.
        let dict = if kept.is_empty() {
            Arc::new(std::sync::Mutex::new(digest::Dictionary::default()))
        } else {
            self.digests.dictionary(tenant)?
        };
        let store = Arc::clone(self);
        self.run_query(async move {
            let ctx = store.session_of(rest, Scan::Selective).await?;
            let rows =
                crate::digest::digest_rows(ctx, from, to, late_after_ns, dict, bucket_ns).await?;
            let mut parts: std::collections::BTreeMap<i64, Vec<&Digest>> = Default::default();
            for (b, d) in &kept {
                parts.entry(*b).or_default().push(d);
            }
            for (b, d) in &rows {
                parts.entry(*b).or_default().push(d);
            }
            Ok(parts
                .into_iter()
                .map(|(b, p)| (b, Digest::merge_all(late_after_ns, &p, &part)))
                .collect())
        })
        .await
    }

    /// A DataFusion session holding only `tenant`'s `events` and `metric_samples` in
    /// `[from, to)` (files outside the range are left out; rows are filtered by the query).
    pub async fn session(
        &self,
        tenant: &str,
        from: i64,
        to: i64,
        scan: Scan,
    ) -> Result<SessionContext> {
        self.session_of(self.snapshot(tenant, from, to)?, scan)
            .await
    }

    /// A session over exactly the files and buffers of `snap`.
    async fn session_of(&self, snap: Snapshot, scan: Scan) -> Result<SessionContext> {
        let mut config = SessionConfig::new()
            .with_target_partitions(self.config.query_threads.max(1))
            .with_information_schema(false);
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        config.options_mut().execution.parquet.pushdown_filters = scan == Scan::Selective;
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(self.caches.0.clone())
            .with_memory_limit(self.config.query_memory_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        register(
            &ctx,
            "events",
            events_schema(),
            snap.events_files,
            snap.events,
        )
        .await?;
        register(
            &ctx,
            "metric_samples",
            samples_schema(),
            snap.samples_files,
            snap.samples,
        )
        .await?;
        Ok(ctx)
    }

    /// Builds `tenant`'s session for `[from, to)` and runs `f` in it, both on the query runtime
    /// and both inside the query timeout (opening Parquet footers is part of a query's cost).
    /// Filters are applied while decoding ([`Scan::Selective`]).
    pub async fn query<T, F, Fut>(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(SessionContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        self.query_scan(tenant, from, to, Scan::Selective, f).await
    }

    /// [`EmbeddedStore::query`] with the given way of scanning.
    pub async fn query_scan<T, F, Fut>(
        self: &Arc<Self>,
        tenant: &str,
        from: i64,
        to: i64,
        scan: Scan,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(SessionContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let store = Arc::clone(self);
        let tenant = tenant.to_string();
        self.run_query(async move {
            let ctx = store.session(&tenant, from, to, scan).await?;
            f(ctx).await
        })
        .await
    }

    /// Spawns `f` on the query runtime, without a timeout (a stream's feeder).
    pub fn spawn_query_task(
        &self,
        f: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let rt = self
            .query_rt
            .0
            .as_ref()
            .ok_or_else(|| Error::Task("query runtime stopped".into()))?;
        rt.spawn(f);
        Ok(())
    }

    /// Runs `f` on the query runtime with the configured timeout.
    pub async fn run_query<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let rt = self
            .query_rt
            .0
            .as_ref()
            .ok_or_else(|| Error::Task("query runtime stopped".into()))?;
        let limit = self.config.query_timeout;
        let handle = rt.spawn(async move { tokio::time::timeout(limit, f).await });
        match handle.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Timeout(limit)),
            Err(e) => Err(Error::Task(format!("query task failed: {e}"))),
        }
    }

    async fn run_writer(&self) -> Result<()> {
        let mut end = self.log.watch_end();
        let mut shutdown = self.shutdown.subscribe();
        let mut builders: HashMap<String, BatchBuilder> = HashMap::new();
        let mut persist: Option<tokio::task::JoinHandle<Result<Persisted>>> = None;
        let mut next = self.applied_offset();
        let mut last_retention = Instant::now();
        loop {
            self.reap_retired();
            if persist.is_none() {
                match self.compact_once().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
                }
            }
            if persist.is_none() && last_retention.elapsed() >= self.config.retention_interval {
                last_retention = Instant::now();
                if let Err(e) = self.enforce_retention() {
                    tracing::error!(error = %e, "retention failed; will retry");
                }
                self.retention_passes
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
            }
            // Finish a completed persistence first: it frees memory and lets the log shrink.
            if persist.as_ref().is_some_and(|p| p.is_finished())
                && let Some(p) = persist.take()
            {
                self.finish_persist(p).await;
            }
            let over_cap = self.state.read().map_err(|_| poisoned())?.buffered_bytes()
                >= self.config.max_buffer_bytes;
            if over_cap && let Some(p) = persist.take() {
                self.finish_persist(p).await;
                continue;
            }
            let records = if over_cap {
                Vec::new()
            } else {
                self.log.read(next, 8192)?
            };
            if records.is_empty() {
                if persist.is_none() && self.persist_due() {
                    persist = self.start_persist(false)?;
                }
                if *shutdown.borrow() {
                    break;
                }
                tokio::select! {
                    _ = end.changed() => {}
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            for rec in &records {
                match codec::decode_entry(&rec.payload).map(|e| e.entry) {
                    Ok(Some(Entry::Event(ev))) => builders
                        .entry(ev.tenant.clone())
                        .or_default()
                        .push(&ev, rec.offset)?,
                    Ok(Some(Entry::TenantDeleted(t))) => {
                        // Apply what came before the tombstone, then drop the tenant everywhere.
                        self.apply(&mut builders, rec.offset)?;
                        if let Some(p) = persist.take() {
                            self.finish_persist(p).await;
                        }
                        self.drop_tenant(&t.tenant)?;
                    }
                    // Rule changes and alert actions are the stream processor's business.
                    Ok(Some(Entry::RuleChange(_) | Entry::AlertAction(_)) | None) => {}
                    Err(e) => {
                        tracing::warn!(offset = rec.offset, error = %e, "undecodable log entry skipped by the store")
                    }
                }
            }
            next = records.last().map_or(next, |r| r.offset + 1);
            self.apply(&mut builders, next)?;
            if persist.is_none() && self.persist_due() {
                persist = self.start_persist(false)?;
            }
        }
        // Graceful stop: persist everything so a restart has nothing to replay.
        if let Some(p) = persist.take() {
            self.finish_persist(p).await;
        }
        if let Some(p) = self.start_persist(true)? {
            self.finish_persist(p).await;
        }
        Ok(())
    }

    /// Moves built rows into the active buffers and advances the applied offset to `next`.
    fn apply(&self, builders: &mut HashMap<String, BatchBuilder>, next: u64) -> Result<()> {
        let mut built = Vec::new();
        for (tenant, b) in builders.iter_mut() {
            if b.rows() > 0 {
                let (e, s) = b.finish()?;
                built.push((tenant.clone(), e, s));
            }
        }
        let mut st = self.state.write().map_err(|_| poisoned())?;
        if !built.is_empty() && st.active_since.is_none() {
            st.active_since = Some(Instant::now());
        }
        for (tenant, e, s) in built {
            st.active.entry(tenant).or_default().add(e, s);
        }
        st.applied = next;
        metrics::gauge!("eddy_store_applied_offset").set(next as f64);
        Ok(())
    }

    fn persist_due(&self) -> bool {
        let Ok(st) = self.state.read() else {
            return false;
        };
        let bytes: usize = st.active.values().map(|b| b.bytes).sum();
        bytes > 0
            && (bytes >= self.config.persist_bytes
                || st
                    .active_since
                    .is_some_and(|t| t.elapsed() >= self.config.persist_age))
    }

    /// Swaps the active buffers out (they stay visible as "persisting") and writes them in the
    /// background. With `force`, runs even below the thresholds.
    fn start_persist(
        &self,
        force: bool,
    ) -> Result<Option<tokio::task::JoinHandle<Result<Persisted>>>> {
        let (snapshot, manifest, upto) = {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            if st.active.is_empty() && !(force && st.applied > st.manifest.persisted_offset) {
                return Ok(None);
            }
            let snap = std::mem::take(&mut st.active);
            st.persisting = snap.clone();
            st.active_since = None;
            (snap, st.manifest.clone(), st.applied)
        };
        let dir = self.config.dir.clone();
        let digests = self.digests.clone();
        let late = self.config.late_after_ns;
        Ok(Some(tokio::task::spawn_blocking(move || {
            write_files(&dir, snapshot, &manifest, upto, &digests, late)
        })))
    }

    async fn finish_persist(&self, task: tokio::task::JoinHandle<Result<Persisted>>) {
        let result = task
            .await
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|r| r);
        match result {
            Ok((manifest, built)) => {
                let upto = manifest.persisted_offset;
                if let Ok(mut st) = self.state.write() {
                    self.install(&mut st, manifest, built);
                    st.persisting.clear();
                }
                if let Err(e) = self.log.commit(CONSUMER, upto) {
                    tracing::warn!(error = %e, "cannot commit the store's log offset");
                }
                metrics::counter!("eddy_store_persists_total").increment(1);
            }
            Err(e) => {
                // Keep the data visible and try again later: put it back in front of the
                // active buffers.
                tracing::error!(error = %e, "persisting the store failed; will retry");
                metrics::counter!("eddy_store_persist_failures_total").increment(1);
                if let Ok(mut st) = self.state.write() {
                    let failed = std::mem::take(&mut st.persisting);
                    for (tenant, mut old) in failed {
                        let newer = st.active.remove(&tenant).unwrap_or_default();
                        old.events.extend(newer.events);
                        old.samples.extend(newer.samples);
                        old.bytes += newer.bytes;
                        st.active.insert(tenant, old);
                    }
                    st.active_since = Some(Instant::now());
                }
            }
        }
    }

    /// Makes `m` the manifest, keeping the digests `built` of its new files and dropping those
    /// of files it no longer lists.
    fn install(&self, st: &mut State, m: Manifest, built: Vec<digest::Built>) {
        for b in built {
            if let Err(e) = self.digests.insert(b.path, b.hour, b.digest) {
                tracing::warn!(error = %e, "cannot keep a file's digest; queries scan it");
            }
        }
        self.digests.retain(&m);
        st.manifest = Arc::new(m);
    }

    fn drop_tenant(&self, tenant: &str) -> Result<()> {
        let (doomed, manifest) = {
            let mut st = self.state.write().map_err(|_| poisoned())?;
            st.active.remove(tenant);
            st.persisting.remove(tenant);
            let mut m = (*st.manifest).clone();
            let (gone, kept): (Vec<_>, Vec<_>) =
                m.files.into_iter().partition(|f| f.tenant == tenant);
            m.files = kept;
            m.save(&self.config.dir)?;
            self.install(&mut st, m.clone(), vec![]);
            self.digests.drop_tenant(tenant);
            (gone, m)
        };
        self.retire(doomed.iter().map(|f| self.config.dir.join(&f.path)));
        tracing::info!(
            tenant,
            files = doomed.len(),
            remaining = manifest.files.len(),
            "store dropped a deleted tenant's data"
        );
        Ok(())
    }
}

/// Caches for every query session: footers (64 MiB) and file statistics (16 MiB).
fn shared_caches() -> Result<SharedCaches> {
    use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
    let config = CacheManagerConfig::default()
        .with_metadata_cache_limit(64 << 20)
        .with_file_statistics_cache_limit(16 << 20);
    let made = CacheManager::try_new(&config)?;
    Ok(SharedCaches(
        config
            .with_file_metadata_cache(Some(made.get_file_metadata_cache()))
            .with_file_statistics_cache(made.get_file_statistic_cache()),
    ))
}

/// How a session's Parquet scans apply a query's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// While decoding ("late materialization"): only rows that pass are decoded in the other
    /// columns. Far cheaper when few rows match (one user, one device: 33 ms instead of 860
    /// ms for a device's events over 10M), the default.
    Selective,
    /// After decoding whole batches: cheaper when most rows pass, as for funnels and retention
    /// whose steps are most of the product events (funnel 520 → 420 ms over 10M events,
    /// docs/benchmarks.md), where building row selections costs more than it saves.
    Broad,
}

/// Registers `name` in `ctx`: `files` (Parquet) and `batches` together, with `schema`.
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    files: Vec<PathBuf>,
    batches: Vec<RecordBatch>,
) -> Result<()> {
    // Strings are read as `Utf8View`: decoding a Parquet page then points into its buffers
    // instead of copying every value, and grouping hashes the inline views (SQL group-bys took
    // half the time, docs/benchmarks.md). Nested map keys and values stay `Utf8`.
    let schema = map_string_types(&schema, |t| {
        (*t == DataType::Utf8).then_some(DataType::Utf8View)
    });
    let batches = batches
        .iter()
        .map(|b| cast_to(b, &schema))
        .collect::<Result<Vec<_>>>()?;
    let mem = Arc::new(MemTable::try_new(schema.clone(), vec![batches])?);
    if files.is_empty() {
        ctx.register_table(name, mem)?;
        return Ok(());
    }
    let paths: Vec<String> = files
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let persisted = ctx
        .read_parquet(paths, ParquetReadOptions::default().schema(&schema))
        .await?;
    let all = persisted.union(ctx.read_table(mem)?)?;
    ctx.register_table(name, all.into_view())?;
    Ok(())
}

/// `schema` with the top-level fields whose type `f` maps changed to that type (nested fields
/// are left alone).
pub(crate) fn map_string_types(
    schema: &SchemaRef,
    f: impl Fn(&DataType) -> Option<DataType>,
) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|field| match f(field.data_type()) {
                Some(t) => Arc::new(field.as_ref().clone().with_data_type(t)),
                None => field.clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// `batch` cast column by column to `schema` (same fields, other types).
pub(crate) fn cast_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::Arrow)?;
    RecordBatch::try_new(schema.clone(), cols).map_err(Error::Arrow)
}

/// Parquet settings of every file the store writes (format 2.0 pages). Columns whose values are
/// (nearly) unique — times, log offsets, event ids — skip the dictionary, which would only grow
/// as large as the data, and use delta encodings instead: sorted times and offsets shrink to a
/// few bits per row, and ids of one writer share long prefixes (see `eddy_model::id`).
fn write_props() -> WriterProperties {
    use parquet::basic::Encoding;
    use parquet::schema::types::ColumnPath;
    let mut b = WriterProperties::builder()
        .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(128 * 1024));
    for (column, encoding) in [
        ("time", Encoding::DELTA_BINARY_PACKED),
        ("received_at", Encoding::DELTA_BINARY_PACKED),
        ("offset", Encoding::DELTA_BINARY_PACKED),
        ("event_id", Encoding::DELTA_BYTE_ARRAY),
    ] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), encoding);
    }
    b.build()
}

/// The order of rows inside a table's files. Events are clustered by `type`: the page index
/// then lets scans that filter on types (funnels, retention, `WHERE type = …`) skip the pages of
/// every other type without decoding them; inside a type, rows are in time order, so page
/// statistics still prune by time. Samples are by series, then time (which the samples
/// digests rely on). Nothing reading events files relies on their order (files written before
/// this order are in time order).
pub(crate) fn file_order(table: Table) -> &'static [&'static str] {
    match table {
        Table::Events => &["type", "time"],
        Table::MetricSamples => &["metric", "device_id", "time"],
    }
}

/// Sorts `batch` by the given columns. Several columns are sorted through Arrow's row format
/// (one memcmp per comparison), which profiling showed far cheaper than per-column comparators.
fn sort_by(batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch> {
    sort_by_keys(batch, std::iter::empty(), columns)
}

/// Sorts `batch` by the `computed` keys (arrays of its length), then by its `columns`.
fn sort_by_keys(
    batch: &RecordBatch,
    computed: impl Iterator<Item = arrow::array::ArrayRef>,
    columns: &[&str],
) -> Result<RecordBatch> {
    let mut cols: Vec<arrow::array::ArrayRef> = computed.collect();
    for c in columns {
        cols.push(
            batch
                .column(batch.schema().index_of(c).map_err(Error::Arrow)?)
                .clone(),
        );
    }
    let idx = if cols.len() == 1 {
        arrow::compute::sort_to_indices(&cols[0], None, None).map_err(Error::Arrow)?
    } else {
        let fields = cols
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        let rows = RowConverter::new(fields)
            .and_then(|conv| conv.convert_columns(&cols))
            .map_err(Error::Arrow)?;
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_unstable_by(|a, b| rows.row(*a as usize).cmp(&rows.row(*b as usize)));
        arrow::array::UInt32Array::from(order)
    };
    take_record_batch(batch, &idx).map_err(Error::Arrow)
}

fn time_column(batch: &RecordBatch) -> Result<&arrow::array::TimestampNanosecondArray> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::TimestampNanosecondArray>()
        .ok_or_else(|| Error::Task("time column has an unexpected type".into()))
}

/// A persist's new manifest and the digests of its new files.
type Persisted = (Manifest, Vec<digest::Built>);

/// Writes every buffered batch into per-(tenant, table, hour) Parquet files and returns the
/// manifest that lists them with `persisted_offset = upto`, saved atomically.
fn write_files(
    dir: &Path,
    snapshot: HashMap<String, Buffer>,
    manifest: &Manifest,
    upto: u64,
    digests: &Digests,
    late_after_ns: i64,
) -> Result<Persisted> {
    let start = Instant::now();
    let mut next = manifest.clone();
    let mut built = Vec::new();
    let mut written = 0u64;
    for (tenant, buf) in snapshot {
        for (table, schema, batches) in [
            (Table::Events, events_schema(), buf.events),
            (Table::MetricSamples, samples_schema(), buf.samples),
        ] {
            if batches.is_empty() {
                continue;
            }
            // One sort (and one copy of the rows) by hour, then the file order inside the hour.
            let all = concat_batches(&schema, &batches).map_err(Error::Arrow)?;
            let hours = arrow::array::Int64Array::from_iter_values(
                time_column(&all)?
                    .values()
                    .iter()
                    .map(|t| t.div_euclid(HOUR_NS)),
            );
            let all = sort_by_keys(
                &all,
                std::iter::once(Arc::new(hours) as _),
                file_order(table),
            )?;
            let times = time_column(&all)?;
            let mut start_row = 0;
            while start_row < all.num_rows() {
                let hour = times.value(start_row).div_euclid(HOUR_NS) * HOUR_NS;
                let mut end_row = start_row;
                while end_row < all.num_rows()
                    && times.value(end_row).div_euclid(HOUR_NS) * HOUR_NS == hour
                {
                    end_row += 1;
                }
                let len = end_row - start_row;
                let slice = all.slice(start_row, len);
                let hour_times = times.slice(start_row, len);
                let meta = write_one(
                    dir,
                    &tenant,
                    table,
                    hour,
                    &slice,
                    arrow::compute::min(&hour_times).unwrap_or(hour),
                    arrow::compute::max(&hour_times).unwrap_or(hour),
                )?;
                written += meta.bytes;
                built.extend(digest::build(digests, &meta, &slice, late_after_ns)?);
                next.files.push(meta);
                start_row = end_row;
            }
        }
    }
    next.persisted_offset = upto;
    next.save(dir)?;
    metrics::counter!("eddy_store_written_bytes_total").increment(written);
    metrics::histogram!("eddy_store_persist_duration_seconds")
        .record(start.elapsed().as_secs_f64());
    tracing::debug!(
        upto,
        bytes = written,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "store persisted"
    );
    Ok((next, built))
}

/// Reads `files` (one partition) and writes them as one sorted file, with its digest.
fn merge_files(
    dir: &Path,
    files: &[FileMeta],
    digests: &Digests,
    late_after_ns: i64,
) -> Result<(FileMeta, Vec<digest::Built>)> {
    let first = files
        .first()
        .ok_or_else(|| Error::Task("nothing to compact".into()))?;
    let schema = match first.table {
        Table::Events => events_schema(),
        Table::MetricSamples => samples_schema(),
    };
    let mut batches = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .build()?;
        for b in reader {
            batches.push(b.map_err(Error::Arrow)?);
        }
    }
    let all = concat_batches(&schema, &batches).map_err(Error::Arrow)?;
    let sorted = sort_by(&all, file_order(first.table))?;
    let min_time = files
        .iter()
        .map(|f| f.min_time)
        .min()
        .unwrap_or(first.min_time);
    let max_time = files
        .iter()
        .map(|f| f.max_time)
        .max()
        .unwrap_or(first.max_time);
    let meta = write_one(
        dir,
        &first.tenant,
        first.table,
        first.hour,
        &sorted,
        min_time,
        max_time,
    )?;
    let built = digest::build(digests, &meta, &sorted, late_after_ns)?
        .into_iter()
        .collect();
    Ok((meta, built))
}

fn write_one(
    dir: &Path,
    tenant: &str,
    table: Table,
    hour: i64,
    batch: &RecordBatch,
    min_time: i64,
    max_time: i64,
) -> Result<FileMeta> {
    let rel_dir = PathBuf::from(tenant)
        .join(table.name())
        .join(hour.to_string());
    let abs_dir = dir.join(&rel_dir);
    let fresh_dir = !abs_dir.exists();
    std::fs::create_dir_all(&abs_dir).map_err(io(&abs_dir))?;
    let name = format!("{}.parquet", uuid::Uuid::now_v7().simple());
    let path = abs_dir.join(&name);
    let file = std::fs::File::create(&path).map_err(io(&path))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(write_props()))?;
    w.write(batch)?;
    let file = w.into_inner()?;
    file.sync_all().map_err(io(&path))?;
    let bytes = file.metadata().map_err(io(&path))?.len();
    sync_dir(&abs_dir)?;
    if fresh_dir {
        // New directories must be durable too, up to the store dir.
        for d in [
            abs_dir.parent(),
            abs_dir.parent().and_then(Path::parent),
            Some(dir),
        ]
        .into_iter()
        .flatten()
        {
            sync_dir(d)?;
        }
    }
    Ok(FileMeta {
        tenant: tenant.into(),
        table,
        hour,
        path: rel_dir.join(name).to_string_lossy().into_owned(),
        rows: batch.num_rows() as u64,
        bytes,
        min_time,
        max_time,
    })
}

/// Deletes Parquet files the manifest does not list (left by a crash before the manifest swap).
fn remove_orphans(dir: &Path, manifest: &Manifest) -> Result<()> {
    let listed: std::collections::HashSet<PathBuf> =
        manifest.files.iter().map(|f| dir.join(&f.path)).collect();
    let mut stack = vec![dir.to_path_buf()];
    let mut removed = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") && !listed.contains(&p) {
                std::fs::remove_file(&p).map_err(io(&p))?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed Parquet files not in the manifest (left by an interrupted persist)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod sort_tests {
    use super::*;
    use crate::schema::BatchBuilder;
    use eddy_model::Event;

    #[test]
    fn samples_sort_by_metric_device_time_with_nulls() {
        let mut b = BatchBuilder::default();
        for (i, (dev, metric, t)) in [
            (Some("b"), "temp", 3),
            (None, "temp", 1),
            (Some("a"), "hum", 9),
            (Some("a"), "temp", 2),
            (Some("b"), "temp", 1),
        ]
        .into_iter()
        .enumerate()
        {
            let mut ev = Event {
                event_id: i.to_string(),
                time: t,
                r#type: "reading".into(),
                device_id: dev.map(Into::into),
                ..Default::default()
            };
            ev.metrics.insert(metric.into(), i as f64);
            b.push(&ev, i as u64).unwrap();
        }
        let (_, samples) = b.finish().unwrap();
        let sorted = sort_by(&samples, &["metric", "device_id", "time"]).unwrap();
        let values: Vec<f64> = sorted
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .values()
            .to_vec();
        // hum/a, then temp: null device first, a, b@1, b@3.
        assert_eq!(values, vec![2.0, 1.0, 3.0, 4.0, 0.0]);
    }
}
