//! The embedded store: its settings, its state (buffers, manifest, applied offset) and the
//! [`EmbeddedStore`] itself — open, start, shutdown, stats, installing a manifest. The writer
//! loop (`writer`), file upkeep (`compaction`), query sessions (`session`) and digest answers
//! (`digested`) are further `impl EmbeddedStore` blocks in their own files, above this one:
//! this file must not name anything of theirs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use eddy_log::Log;
use eddy_log::runner::ConsumerTask;

use crate::buffer::Buffer;
use crate::digest::{self, Digests};
use crate::error::io;
use crate::files::remove_orphans;
use crate::manifest::{FileMeta, Manifest, Table};
use crate::runtime::{QueryRuntime, SharedCaches, shared_caches};
use crate::{Error, Result};

/// Name of the store's log consumer.
pub const CONSUMER: &str = "store";

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
    /// Per-query limits.
    pub query_timeout: Duration,
    pub query_memory_bytes: usize,
    pub max_result_rows: usize,
    /// Threads of the query runtime (kept apart from ingest's).
    pub query_threads: usize,
    /// How often expired partitions are looked for.
    pub retention_interval: Duration,
    /// A partition with at least this many files (of at most `compact_max_bytes` together) is
    /// compacted into one.
    pub compact_min_files: usize,
    /// Only files smaller than this are merged (a full persist's files are big enough).
    pub compact_small_bytes: u64,
    /// ... and with fewer rows than this: well-compressed data makes small files of many rows
    /// (a full persist of repetitive readings: ~300 KB for 190k rows), and merging those
    /// rewrites everything once more for nothing.
    pub compact_small_rows: u64,
    /// The most bytes of Parquet one compaction reads: bigger files are left as they are (they
    /// are big enough), and a merge's memory stays bounded.
    pub compact_max_bytes: u64,
    /// The most rows one compaction reads: a merge holds them all decoded (and sorted), which
    /// for well-compressed files is far more than their bytes say.
    pub compact_max_rows: u64,
    /// Which partition width data gets by its age (hours, then days, then months).
    pub partitioning: crate::partition::Partitioning,
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
            query_timeout: Duration::from_secs(30),
            query_memory_bytes: 512 << 20,
            max_result_rows: 100_000,
            query_threads: 2,
            retention_interval: Duration::from_secs(60),
            compact_min_files: 8,
            compact_small_bytes: 1 << 20,
            compact_small_rows: 100_000,
            compact_max_bytes: 32 << 20,
            compact_max_rows: 1_000_000,
            partitioning: crate::partition::Partitioning::default(),
            digest_memory_bytes: 256 << 20,
            late_after_ns: 300_000_000_000,
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) active: HashMap<String, Buffer>,
    pub(crate) persisting: HashMap<String, Buffer>,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) active_since: Option<Instant>,
    /// Every record below this offset is in a buffer or a file.
    pub(crate) applied: u64,
}

impl State {
    pub(crate) fn buffered_bytes(&self) -> usize {
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
    pub(crate) config: StoreConfig,
    pub(crate) log: Arc<dyn Log>,
    pub(crate) state: RwLock<State>,
    pub(crate) query_rt: QueryRuntime,
    /// The writer loop's task and stop signal.
    pub(crate) task: ConsumerTask,
    pub(crate) retention: std::sync::Mutex<Option<Arc<dyn RetentionPolicy>>>,
    /// Files already out of the manifest, unlinked once no query can still be reading them.
    pub(crate) retired: std::sync::Mutex<Vec<(Instant, PathBuf)>>,
    /// Parquet footers and file statistics, shared by every query's session (each has its own
    /// runtime for its memory limit, which would otherwise start with empty caches). Files
    /// never change under a name, and entries are checked against size and mtime.
    pub(crate) caches: SharedCaches,
    /// Digests of the events files (see [`crate::digest`]).
    pub(crate) digests: Arc<Digests>,
    /// Retention passes of the writer loop so far (tests synchronise on it).
    pub(crate) retention_passes: std::sync::atomic::AtomicU64,
    /// Set once the background build of missing digests after a start has ended.
    pub(crate) digests_rebuilt: std::sync::atomic::AtomicBool,
}

pub(crate) fn poisoned() -> Error {
    Error::Task("store state lock poisoned".into())
}

impl EmbeddedStore {
    /// Now, ns since the epoch: the retention policy's clock (tests inject one), else the
    /// system's.
    pub(crate) fn now_ns(&self) -> i64 {
        if let Some(p) = self.retention.lock().ok().and_then(|r| r.clone()) {
            return p.now_ns();
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

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
            query_rt: QueryRuntime::new(query_rt),
            task: ConsumerTask::new("store writer", "final persist"),
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

    /// Starts the writer task on the current runtime.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        self.task.spawn(async move { me.run_writer().await });
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
        files.sort_by_key(|f| std::cmp::Reverse(f.partition));
        let (start, mut built) = (Instant::now(), 0);
        for f in files {
            if self.task.stopping() || !self.digests.enabled() {
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
        self.task.stop().await;
    }

    /// Stops the query runtime and waits for its threads (a runtime left running crashes the exit): the last step
    /// of a shutdown, once nothing queries any more.
    pub async fn stop_queries(&self) {
        self.query_rt.stop().await;
    }

    /// Stops the writer at once, persisting nothing: what a crash does (tests).
    #[doc(hidden)]
    pub async fn crash(&self) {
        self.task.abort().await;
    }

    /// The offset up to which events are queryable.
    pub fn applied_offset(&self) -> u64 {
        self.state.read().map(|s| s.applied).unwrap_or(0)
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
                .entry((f.tenant.as_str(), f.table, f.partition))
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

    /// Makes `m` the manifest, keeping the digests `built` of its new files and dropping those
    /// of files it no longer lists.
    pub(crate) fn install(&self, st: &mut State, m: Manifest, built: Vec<digest::Built>) {
        for b in built {
            if let Err(e) = self.digests.insert(b.path, b.hour, b.digest) {
                tracing::warn!(error = %e, "cannot keep a file's digest; queries scan it");
            }
        }
        self.digests.retain(&m);
        st.manifest = Arc::new(m);
    }
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
