//! The stream processor: the log consumer `stream`, applying every event to its tenant's
//! rollups and checkpointing them together with the log offset they reflect.
//!
//! **Exactly once.** `<dir>/checkpoint.zst` (format version 1: zstd-compressed JSON
//! `{"version", "offset", "tenants"}`) is replaced atomically (temp file, fsync, rename, fsync
//! dir). It holds the state after applying every record below `offset` and nothing else; on
//! start the processor loads it and replays the log from `offset`. The log consumer offset is
//! committed only after a checkpoint is durable (so the WAL keeps what a restart must replay).
//!
//! **Persisted windows.** Each checkpoint first takes the windows closed since the last one
//! ([`TenantRollups::take_closed`]) and writes them as Parquet under `<dir>/rollups`
//! ([`crate::persist`]), then writes the checkpoint without them. On start, files the
//! checkpoint does not know are deleted and the persisted windows within the memory horizon are
//! loaded back; older ones are read from the files when a query reaches them
//! ([`Processor::read_range`]).
//!
//! Files: `checkpoint` (the checkpoint's content and file, the flush queue) below this one;
//! `consume` (the loop applying records, eviction, dead-man checks) and `tables` (rollup tables
//! for SQL, range reads reaching the files) are further `impl Processor` blocks above it: this
//! file must not name anything of theirs.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use eddy_log::Log;
use eddy_log::runner::ConsumerTask;
use eddy_model::{Clock, SystemClock};
use tokio::sync::{mpsc, watch};

use crate::alerts::{AlertNotice, TenantAlerts};
use crate::checkpoint::{
    CHECKPOINT_VERSION, CheckpointRef, Flusher, InFlight, State, load_checkpoint, write_checkpoint,
};
use crate::persist::{self, Want};
use crate::rollup::{Resolution, TenantRollups};
use crate::{Error, Result, poisoned};

pub use crate::checkpoint::checkpoint_offset;

/// Name of the processor's log consumer.
pub const CONSUMER: &str = "stream";
pub(crate) const EVICT_INTERVAL: Duration = Duration::from_secs(5);
const CHECKPOINT_DUTY: u32 = 20;

/// Settings of the stream processor.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Directory of the checkpoint.
    pub dir: PathBuf,
    /// How late (in event time, behind the watermark) an event may be and still update its
    /// window.
    pub allowed_lateness: Duration,
    /// Checkpoint at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// How long closed windows stay queryable in memory, per resolution (1m, 1h, 1d).
    pub horizon: [Duration; 3],
    /// Most (device, metric) series a tenant may have in memory; events that would add more
    /// are rejected at ingest. 0 = unlimited.
    pub max_series_per_tenant: usize,
    /// Most rollup windows in memory over all tenants (about 160 bytes each); beyond, closed
    /// windows leave memory sooner than their horizon (they stay in the files). Open and
    /// unpersisted windows always stay. 0 = unlimited.
    pub max_windows: usize,
    /// How often closed windows are frozen and evicted.
    pub evict_interval: Duration,
}

impl StreamConfig {
    /// Defaults for a directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            allowed_lateness: Duration::from_secs(300),
            checkpoint_interval: Duration::from_secs(10),
            horizon: [
                Duration::from_secs(24 * 3600),
                Duration::from_secs(7 * 86_400),
                Duration::from_secs(90 * 86_400),
            ],
            max_series_per_tenant: 100_000,
            max_windows: 5_000_000,
            evict_interval: EVICT_INTERVAL,
        }
    }

    /// Allowed lateness in ns.
    pub fn lateness_ns(&self) -> i64 {
        i64::try_from(self.allowed_lateness.as_nanos()).unwrap_or(i64::MAX)
    }

    /// How long closed windows of `r` stay in memory, ns.
    pub fn horizon_ns(&self, r: Resolution) -> i64 {
        let d = match r {
            Resolution::Minute => self.horizon[0],
            Resolution::Hour => self.horizon[1],
            Resolution::Day => self.horizon[2],
        };
        i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
    }

    /// Where closed windows are persisted.
    pub fn rollups_dir(&self) -> PathBuf {
        self.dir.join("rollups")
    }
}

/// The running processor; queries read its state through [`Processor::read`].
#[derive(Debug)]
pub struct Processor {
    pub(crate) config: StreamConfig,
    pub(crate) log: Arc<dyn Log>,
    pub(crate) state: RwLock<State>,
    /// The processing loop's task and stop signal.
    pub(crate) task: ConsumerTask,
    pub(crate) last_checkpoint_took: std::sync::Mutex<Duration>,
    /// The checkpoint being written off the processing loop, if any.
    pub(crate) in_flight: std::sync::Mutex<Option<InFlight>>,
    pub(crate) feed: crate::feed::Feed,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) applied: watch::Sender<u64>,
    pub(crate) notices: mpsc::Sender<AlertNotice>,
    pub(crate) notices_rx: std::sync::Mutex<Option<mpsc::Receiver<AlertNotice>>>,
    pub(crate) flusher: Arc<Flusher>,
    pub(crate) footers: Arc<persist::Footers>,
    /// Memory pressure: the horizons are divided by 2^pressure (see [`Processor::evict`]).
    pub(crate) pressure: std::sync::atomic::AtomicU32,
    /// Checkpoints that failed since the processor opened.
    pub(crate) checkpoint_failures: std::sync::atomic::AtomicU64,
}

/// Most halvings of the horizons under memory pressure.
pub(crate) const MAX_PRESSURE: u32 = 20;

/// One rollup table for SQL: files and the windows not in them yet.
#[derive(Debug)]
pub struct RollupTable {
    pub name: &'static str,
    pub schema: arrow::datatypes::SchemaRef,
    pub files: Vec<PathBuf>,
    pub batch: arrow::array::RecordBatch,
}

/// Alert transitions waiting for the notifier (webhooks) at most; beyond, they are dropped
/// and counted (`eddy_stream_alert_notices_dropped_total`).
pub const NOTICE_QUEUE: usize = 10_000;

impl Processor {
    /// Loads the checkpoint (if any) and registers the consumer; [`Processor::start`] runs it.
    pub fn open(config: StreamConfig, log: Arc<dyn Log>) -> Result<Arc<Self>> {
        Self::open_with_clock(config, log, Arc::new(SystemClock))
    }

    /// [`Processor::open`] with the clock dead-man rules judge silence by.
    pub fn open_with_clock(
        config: StreamConfig,
        log: Arc<dyn Log>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&config.dir).map_err(|e| Error::io(&config.dir, e))?;
        let mut state = load_checkpoint(&config.dir)?.unwrap_or_default();
        let root = config.rollups_dir();
        let removed = persist::recover(&root, |t| {
            state.tenants.get(t).map_or(0, TenantRollups::flush_seq)
        })?;
        if removed > 0 {
            tracing::info!(
                files = removed,
                "stream: deleted rollup files the checkpoint does not cover (the replay rewrites them)"
            );
        }
        let lateness = config.lateness_ns();
        for (tenant, t) in &mut state.tenants {
            if t.flush_seq() > 0
                && let Some(w) = t.watermark(lateness)
            {
                let since = Resolution::ALL.map(|r| w.saturating_sub(config.horizon_ns(r)));
                t.insert_closed(persist::read(
                    &root,
                    tenant,
                    &Want::EndingAfter(since),
                    &persist::Footers::default(),
                )?);
                // The checkpoint held no persisted window; the files' recent part is back.
                for (r, since) in Resolution::ALL.into_iter().zip(since) {
                    t.mark_evicted(r, since.min(t.flushed_through().unwrap_or(i64::MIN)));
                }
            }
            t.recount();
        }
        let committed = log.register_consumer(CONSUMER)?;
        if committed > state.offset || log.start_offset() > state.offset {
            return Err(Error::LogGap {
                needed: state.offset,
                start: log.start_offset().max(committed),
            });
        }
        let (applied, _) = watch::channel(state.offset);
        let (notices, notices_rx) = mpsc::channel(NOTICE_QUEUE);
        Ok(Arc::new(Self {
            config,
            log,
            state: RwLock::new(state),
            task: ConsumerTask::new("stream processor", "final checkpoint"),
            last_checkpoint_took: std::sync::Mutex::new(Duration::ZERO),
            in_flight: std::sync::Mutex::new(None),
            feed: crate::feed::Feed::default(),
            clock,
            applied,
            notices,
            notices_rx: std::sync::Mutex::new(Some(notices_rx)),
            flusher: Arc::default(),
            footers: Arc::default(),
            pressure: std::sync::atomic::AtomicU32::new(0),
            checkpoint_failures: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The settings it runs with.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Checkpoints that failed since the processor opened (each is retried).
    pub fn checkpoint_failures(&self) -> u64 {
        self.checkpoint_failures
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts consuming the log on the current runtime.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        self.task.spawn(async move { me.run().await });
    }

    /// Stops after a final checkpoint.
    pub async fn shutdown(&self) {
        self.task.stop().await;
    }

    /// Stops at once without a checkpoint: what a crash does (tests).
    #[doc(hidden)]
    pub async fn crash(&self) {
        self.task.abort().await;
        // A checkpoint thread cannot be aborted; let it finish (as if the crash came right
        // after its rename) so that it cannot overwrite a newer checkpoint later. Its offset is
        // not committed.
        let pending = self.in_flight.lock().ok().and_then(|mut f| f.take());
        if let Some(f) = pending {
            let _ = f.handle.await;
        }
    }

    /// Every record below this offset is reflected in the rollups.
    pub fn applied_offset(&self) -> u64 {
        self.state.read().map(|s| s.offset).unwrap_or(0)
    }

    /// A live subscription to `tenant`'s messages on `channels`, from now on.
    pub fn subscribe(
        &self,
        tenant: &str,
        channels: &std::collections::BTreeSet<crate::Channel>,
    ) -> crate::feed::Subscription {
        self.feed.subscribe(tenant, channels)
    }

    /// Waits (at most `timeout`) until every record below `offset` is applied; whether it is.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|o| *o >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The queue of alert transitions for the notifier; `None` after the first call.
    pub fn take_notices(&self) -> Option<mpsc::Receiver<AlertNotice>> {
        self.notices_rx.lock().ok()?.take()
    }

    /// Runs `f` on `tenant`'s rules and alerts (a tenant without any has the default rule).
    pub fn read_alerts<T>(&self, tenant: &str, f: impl FnOnce(&TenantAlerts) -> T) -> Result<T> {
        let s = self.state.read().map_err(|_| poisoned())?;
        Ok(match s.alerts.get(tenant) {
            Some(t) => f(t),
            None => f(&TenantAlerts::with_default_rule(0)),
        })
    }

    /// Runs `f` on `tenant`'s rollups in memory (empty rollups for a tenant without events).
    pub fn read<T>(&self, tenant: &str, f: impl FnOnce(&TenantRollups) -> T) -> Result<T> {
        let s = self.state.read().map_err(|_| poisoned())?;
        Ok(match s.tenants.get(tenant) {
            Some(t) => f(t),
            None => f(&TenantRollups::default()),
        })
    }

    /// Under the write lock: queues the windows closed since the last checkpoint for the rollup
    /// files and copies the state without persisted windows (a copy: about 6× cheaper than
    /// serializing it).
    pub(crate) fn snapshot(&self) -> Result<State> {
        let lateness = self.config.lateness_ns();
        let mut s = self.state.write().map_err(|_| poisoned())?;
        let mut pending = self.flusher.pending.lock().map_err(|_| poisoned())?;
        for (tenant, t) in &mut s.tenants {
            if let Some((seq, closed)) = t.take_closed(lateness) {
                pending.push((tenant.clone(), seq, Arc::new(closed)));
            }
        }
        Ok(State {
            offset: s.offset,
            tenants: s
                .tenants
                .iter()
                .map(|(k, t)| (k.clone(), t.checkpoint_copy()))
                .collect(),
            alerts: s.alerts.clone(),
        })
    }

    /// Starts a checkpoint off the loop unless one is being written: snapshots the state
    /// ([`Self::snapshot`]) and hands it to a blocking thread, which writes the queued rollup
    /// files, then the checkpoint. Whether one was started.
    pub(crate) fn start_checkpoint(&self) -> bool {
        let Ok(mut in_flight) = self.in_flight.lock() else {
            return false;
        };
        if in_flight.is_some() {
            return false;
        }
        let started = Instant::now();
        let Ok(snapshot) = self.snapshot() else {
            return false;
        };
        let offset = snapshot.offset;
        let dir = self.config.dir.clone();
        let flusher = self.flusher.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let root = dir.join("rollups");
            let flushed = flusher.persist(&root)?;
            let json = serde_json::to_vec(&CheckpointRef {
                version: CHECKPOINT_VERSION,
                state: &snapshot,
            })
            .map_err(|e| Error::Checkpoint(e.to_string()))?;
            write_checkpoint(&dir, &json)?;
            // Only now are the flushes committed; merging may replace them.
            for tenant in flushed {
                match persist::merge_small(&root, &tenant) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(tenant, files = n, "stream: merged rollup files"),
                    Err(e) => {
                        tracing::warn!(tenant, error = %e, "stream: merging rollup files failed")
                    }
                }
            }
            Ok(())
        });
        *in_flight = Some(InFlight {
            handle,
            offset,
            started,
        });
        true
    }

    /// Completes the checkpoint in flight once it is written (or, with `wait`, waits for it):
    /// commits the log consumer to its offset. `None` while nothing finished. A failure is
    /// logged and counted and the next one is tried as usual (the log keeps everything since
    /// the last good checkpoint, so nothing is lost meanwhile).
    pub(crate) async fn finish_checkpoint(
        &self,
        wait: bool,
    ) -> Option<std::result::Result<u64, ()>> {
        let f = {
            let mut in_flight = self.in_flight.lock().ok()?;
            if !wait && !in_flight.as_ref()?.handle.is_finished() {
                return None;
            }
            in_flight.take()?
        };
        let written = f
            .handle
            .await
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|r| r)
            .and_then(|()| Ok(self.log.commit(CONSUMER, f.offset)?));
        Some(match written {
            Ok(()) => {
                let took = f.started.elapsed();
                metrics::histogram!("eddy_stream_checkpoint_duration_seconds")
                    .record(took.as_secs_f64());
                if let Ok(mut t) = self.last_checkpoint_took.lock() {
                    *t = took;
                }
                Ok(f.offset)
            }
            Err(e) => {
                tracing::error!(error = %e, "stream checkpoint failed; will retry");
                metrics::counter!("eddy_stream_checkpoint_failures_total").increment(1);
                self.checkpoint_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Release);
                Err(())
            }
        })
    }

    /// The wait before the next checkpoint, given how long the last one took.
    pub(crate) fn paced(&self) -> Duration {
        let took = self
            .last_checkpoint_took
            .lock()
            .map(|t| *t)
            .unwrap_or_default();
        self.config.checkpoint_interval.max(took * CHECKPOINT_DUTY)
    }

    /// Writes a checkpoint (after any in flight) and commits the log consumer; returns the
    /// offset it covers (the final one, on shutdown, with the loop stopped).
    pub(crate) async fn checkpoint(&self) -> Result<u64> {
        let _ = self.finish_checkpoint(true).await;
        if !self.start_checkpoint() {
            return Err(Error::Task("cannot start a checkpoint".into()));
        }
        match self.finish_checkpoint(true).await {
            Some(Ok(offset)) => Ok(offset),
            _ => Err(Error::Checkpoint(
                "the final checkpoint failed (see the log)".into(),
            )),
        }
    }
}
