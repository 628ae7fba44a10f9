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

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use eddy_log::Log;
use eddy_model::{Clock, Entry, Event, SystemClock, codec};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::alerts::{AlertNotice, Rule, TenantAlerts};
use crate::feed::{Live, RollupUpdate};
use crate::persist::{self, Want};
use crate::rollup::{Closed, Resolution, Series, TenantRollups};
use crate::{Error, Result};

/// Name of the processor's log consumer.
pub const CONSUMER: &str = "stream";
const CHECKPOINT_VERSION: u32 = 1;
const EVICT_INTERVAL: Duration = Duration::from_secs(5);
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

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    /// Every record below this offset has been applied.
    offset: u64,
    tenants: HashMap<String, TenantRollups>,
    /// Rules, detectors and alerts per tenant (absent in checkpoints written before alerting:
    /// every tenant then starts with the default rule).
    #[serde(default)]
    alerts: HashMap<String, TenantAlerts>,
}

#[derive(Serialize)]
struct CheckpointRef<'a> {
    version: u32,
    #[serde(flatten)]
    state: &'a State,
}

#[derive(Deserialize)]
struct CheckpointOwned {
    version: u32,
    #[serde(flatten)]
    state: State,
}

/// The running processor; queries read its state through [`Processor::read`].
#[derive(Debug)]
pub struct Processor {
    config: StreamConfig,
    log: Arc<dyn Log>,
    state: RwLock<State>,
    shutdown: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    last_checkpoint_took: std::sync::Mutex<Duration>,
    /// The checkpoint being written off the processing loop, if any.
    in_flight: std::sync::Mutex<Option<InFlight>>,
    feed: crate::feed::Feed,
    clock: Arc<dyn Clock>,
    applied: watch::Sender<u64>,
    notices: mpsc::Sender<AlertNotice>,
    notices_rx: std::sync::Mutex<Option<mpsc::Receiver<AlertNotice>>>,
    flusher: Arc<Flusher>,
    footers: Arc<persist::Footers>,
    /// Memory pressure: the horizons are divided by 2^pressure (see [`Processor::evict`]).
    pressure: std::sync::atomic::AtomicU32,
    /// Checkpoints that failed since the processor opened.
    checkpoint_failures: std::sync::atomic::AtomicU64,
}

/// Most halvings of the horizons under memory pressure.
const MAX_PRESSURE: u32 = 20;

/// One rollup table for SQL: files and the windows not in them yet.
#[derive(Debug)]
pub struct RollupTable {
    pub name: &'static str,
    pub schema: arrow::datatypes::SchemaRef,
    pub files: Vec<PathBuf>,
    pub batch: arrow::array::RecordBatch,
}

/// Closed windows and tenant deletions waiting to reach the rollup files; the next checkpoint
/// writes them first (and keeps what failed for the one after).
#[derive(Debug, Default)]
struct Flusher {
    /// (tenant, flush number, windows), in order; an entry leaves once written.
    pending: std::sync::Mutex<Vec<(String, u64, Arc<Closed>)>>,
    /// Tenants deleted since the last checkpoint: their files go before new ones are written.
    deleted: std::sync::Mutex<Vec<String>>,
}

impl Flusher {
    /// A deleted tenant: drop its queued flushes, delete its files before the next writes.
    fn forget(&self, tenant: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|(t, _, _)| t != tenant);
        }
        if let Ok(mut d) = self.deleted.lock() {
            d.push(tenant.to_string());
        }
    }

    /// Whether some flush is not written yet.
    fn unwritten(&self) -> bool {
        self.pending.lock().map_or(true, |p| !p.is_empty())
    }

    /// Applies deletions, then writes pending flushes in order, each leaving the queue once
    /// its files are in place (so a window is always in memory, the queue or a file); what
    /// fails stays queued. Returns the tenants written to.
    fn persist(&self, root: &Path) -> Result<Vec<String>> {
        let deleted = std::mem::take(&mut *self.deleted.lock().map_err(|_| poisoned())?);
        for (i, t) in deleted.iter().enumerate() {
            if let Err(e) = persist::remove_tenant(root, t) {
                if let Ok(mut d) = self.deleted.lock() {
                    d.splice(0..0, deleted[i..].iter().cloned());
                }
                return Err(e);
            }
        }
        let pending = self.pending.lock().map_err(|_| poisoned())?.clone();
        let mut written = Vec::new();
        for (tenant, seq, closed) in pending {
            persist::write_flush(root, &tenant, seq, &closed)?;
            self.pending
                .lock()
                .map_err(|_| poisoned())?
                .retain(|(t, s, _)| !(*t == tenant && *s == seq));
            if !written.contains(&tenant) {
                written.push(tenant);
            }
        }
        Ok(written)
    }
}

/// A checkpoint being written: a snapshot of the state at `offset`, serialized and written on
/// a blocking thread while the loop goes on applying records.
#[derive(Debug)]
struct InFlight {
    handle: tokio::task::JoinHandle<Result<()>>,
    offset: u64,
    started: Instant,
}

/// Alert transitions waiting for the notifier (webhooks) at most; beyond, they are dropped
/// and counted (`eddy_stream_alert_notices_dropped_total`).
pub const NOTICE_QUEUE: usize = 10_000;

fn poisoned() -> Error {
    Error::Task("stream state lock poisoned".into())
}

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
        let (shutdown, _) = watch::channel(false);
        let (applied, _) = watch::channel(state.offset);
        let (notices, notices_rx) = mpsc::channel(NOTICE_QUEUE);
        Ok(Arc::new(Self {
            config,
            log,
            state: RwLock::new(state),
            shutdown,
            task: std::sync::Mutex::new(None),
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
        let handle = tokio::spawn(async move {
            if let Err(e) = me.run().await {
                tracing::error!(error = %e, "stream processor stopped");
            }
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(handle);
        }
    }

    /// Stops after a final checkpoint.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let handle = match self.task.lock() {
            Ok(mut t) => t.take(),
            Err(_) => {
                tracing::error!(
                    "stream processor state is poisoned: the final checkpoint is skipped; the next start replays the log from the last one"
                );
                return;
            }
        };
        if let Some(h) = handle
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "stream processor ended abnormally before its final checkpoint; the next start replays the log from the last one");
        }
    }

    /// Stops at once without a checkpoint: what a crash does (tests).
    #[doc(hidden)]
    pub async fn crash(&self) {
        let handle = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
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

    /// `tenant`'s rollups as two tables for SQL — metric windows (the `rollups` table) and
    /// count windows (`rollup_counts`): the persisted files plus, in memory, every window the
    /// files do not hold yet (open ones, and flushes not written yet). Same schemas as the files
    /// ([`persist::metrics_schema`], [`persist::counts_schema`]).
    pub fn rollup_tables(&self, tenant: &str) -> Result<[RollupTable; 2]> {
        let root = self.config.rollups_dir();
        // A window is in memory, then queued, then in a file (merged files replace their
        // inputs). Memory and queue are read together (a checkpoint moves windows between them
        // under both locks); files listed afterwards are used up to the flush number seen
        // then, and a queued flush a listed file holds is skipped. A merge or flush racing the
        // listing past that number makes it start over.
        for _ in 0..3 {
            let (mut rows, pending, seq) = {
                let s = self.state.read().map_err(|_| poisoned())?;
                let pending = self.flusher.pending.lock().map_err(|_| poisoned())?;
                let (rows, seq) = s
                    .tenants
                    .get(tenant)
                    .map_or((Closed::default(), 0), |t| (t.unpersisted(), t.flush_seq()));
                let queued: Vec<(u64, Arc<Closed>)> = pending
                    .iter()
                    .filter(|(t, _, _)| t == tenant)
                    .map(|(_, n, c)| (*n, c.clone()))
                    .collect();
                (rows, queued, seq)
            };
            let mut files = persist::list(&root, tenant)?;
            if files.iter().any(|f| f.hi > seq) {
                continue;
            }
            let all = files.clone();
            files.retain(|f| !f.merged_away(&all));
            let in_file = |kind: persist::Kind, n: u64| {
                files
                    .iter()
                    .any(|f| f.kind == kind && (f.lo..=f.hi).contains(&n))
            };
            for (n, closed) in &pending {
                if !in_file(persist::Kind::Metrics, *n) {
                    rows.metrics.extend(closed.metrics.iter().cloned());
                }
                if !in_file(persist::Kind::Counts, *n) {
                    rows.counts.extend(closed.counts.iter().cloned());
                }
            }
            let paths = |kind: persist::Kind| -> Vec<PathBuf> {
                files
                    .iter()
                    .filter(|f| f.kind == kind)
                    .map(|f| f.path.clone())
                    .collect()
            };
            return Ok([
                RollupTable {
                    name: "rollups",
                    schema: persist::metrics_schema(),
                    files: paths(persist::Kind::Metrics),
                    batch: persist::metrics_batch(&rows.metrics.iter().collect::<Vec<_>>())?,
                },
                RollupTable {
                    name: "rollup_counts",
                    schema: persist::counts_schema(),
                    files: paths(persist::Kind::Counts),
                    batch: persist::counts_batch(&rows.counts.iter().collect::<Vec<_>>())?,
                },
            ]);
        }
        Err(Error::Task(
            "rollup files kept changing while being listed; try again".into(),
        ))
    }

    /// Runs `f` on `tenant`'s windows of `series` and `r` starting in `[from, to)`, wherever
    /// they are: in memory, or — for a range reaching past what memory holds — also read back
    /// from the rollup files (into a view holding just those windows).
    pub async fn read_range<T>(
        &self,
        tenant: &str,
        (r, from, to): (Resolution, i64, i64),
        series: Series,
        f: impl FnOnce(&TenantRollups) -> T,
    ) -> Result<T> {
        if !self.read(tenant, |t| t.reaches_past_memory(r, from))? {
            return self.read(tenant, f);
        }
        let (root, owner, footers) = (
            self.config.rollups_dir(),
            tenant.to_string(),
            self.footers.clone(),
        );
        let want = Want::Range {
            resolution: r,
            from,
            to,
            series: series.clone(),
        };
        let history =
            tokio::task::spawn_blocking(move || persist::read(&root, &owner, &want, &footers))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        metrics::counter!("eddy_stream_rollup_file_reads_total").increment(1);
        self.read(tenant, |t| {
            let mut view = t.range_copy(r, from, to, &series);
            view.insert_closed(history);
            f(&view)
        })
    }

    async fn run(&self) -> Result<()> {
        let mut end = self.log.watch_end();
        let mut shutdown = self.shutdown.subscribe();
        let mut last_checkpoint = Instant::now();
        // A checkpoint writes the whole state, so its cost grows with it: the next one waits
        // at least `CHECKPOINT_DUTY` times as long as the last one took (≤ 5% of the time
        // goes to checkpoints; replay after a crash is correspondingly longer). The loop only
        // pauses to snapshot the state; serializing and writing happen on another thread.
        let mut gap = self.config.checkpoint_interval;
        let mut checkpointed = self.applied_offset();
        let lateness = self.config.lateness_ns();
        let mut last_evict = Instant::now();
        let mut last_silence_check = Instant::now();
        loop {
            if let Some(done) = self.finish_checkpoint(false).await {
                checkpointed = done.unwrap_or(checkpointed);
                gap = self.paced();
            }
            // Eviction walks every window, so it runs every few seconds, not per batch (and
            // also while idle: windows close by event time, not by traffic).
            if last_evict.elapsed() >= self.config.evict_interval {
                last_evict = Instant::now();
                self.evict()?;
            }
            let next = self.applied_offset();
            let records = match self.log.read(next, 8192) {
                Ok(r) => r,
                Err(e) => {
                    // The log may recover (or the server is stopping): retry, don't die.
                    tracing::error!(error = %e, offset = next, "stream processor cannot read the log; retrying");
                    if *shutdown.borrow() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if records.is_empty() {
                // Caught up: silence is real now (not records still to be replayed).
                if last_silence_check.elapsed() >= EVICT_INTERVAL {
                    last_silence_check = Instant::now();
                    self.check_silence()?;
                }
                if next > checkpointed
                    && last_checkpoint.elapsed() >= gap
                    && self.start_checkpoint()
                {
                    last_checkpoint = Instant::now();
                }
                if *shutdown.borrow() {
                    break;
                }
                tokio::select! {
                    _ = end.changed() => {}
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            let mut late = 0u64;
            let mut notices = Vec::new();
            {
                let mut s = self.state.write().map_err(|_| poisoned())?;
                let State {
                    offset,
                    tenants,
                    alerts,
                } = &mut *s;
                for rec in &records {
                    match codec::decode_entry(&rec.payload).map(|e| e.entry) {
                        Ok(Some(Entry::Event(ev))) => {
                            let rollups = tenants.entry(ev.tenant.clone()).or_default();
                            let applied = rollups.apply(&ev, rec.offset, lateness);
                            late += u64::from(applied.late);
                            let start = notices.len();
                            alerts
                                .entry(ev.tenant.clone())
                                .or_insert_with(|| TenantAlerts::with_default_rule(ev.received_at))
                                .observe(&ev, &mut notices);
                            self.publish_event(ev, rollups, &notices[start..]);
                        }
                        Ok(Some(Entry::TenantDeleted(t))) => {
                            tenants.remove(&t.tenant);
                            self.flusher.forget(&t.tenant);
                            alerts.remove(&t.tenant);
                            self.feed.drop_tenant(&t.tenant);
                        }
                        Ok(Some(Entry::RuleChange(c))) => {
                            let rule = match c
                                .rule_json
                                .as_deref()
                                .map(serde_json::from_str::<Rule>)
                            {
                                Some(Ok(r)) => Some(r),
                                None => None,
                                Some(Err(e)) => {
                                    tracing::warn!(offset = rec.offset, error = %e, "undecodable rule skipped by the stream processor");
                                    *offset = rec.offset + 1;
                                    continue;
                                }
                            };
                            let start = notices.len();
                            alerts
                                .entry(c.tenant.clone())
                                .or_insert_with(|| TenantAlerts::with_default_rule(c.at))
                                .change_rule(&c.tenant, &c.rule_id, rule, c.at, &mut notices);
                            self.feed.publish(
                                &c.tenant,
                                notices[start..].iter().cloned().map(Live::Alert),
                            );
                        }
                        Ok(Some(Entry::AlertAction(a))) => {
                            if let Some(n) = alerts.get_mut(&a.tenant).and_then(|t| {
                                t.act(&a.tenant, &a.alert_id, &a.action, a.at, a.note.clone())
                            }) {
                                self.feed.publish(&a.tenant, [Live::Alert(n.clone())]);
                                notices.push(n);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(offset = rec.offset, error = %e, "undecodable log entry skipped by the stream processor")
                        }
                    }
                    *offset = rec.offset + 1;
                }
            }
            self.notify(notices);
            self.applied.send_replace(self.applied_offset());
            metrics::counter!("eddy_stream_events_total").increment(records.len() as u64);
            if late > 0 {
                metrics::counter!("eddy_stream_late_total").increment(late);
            }
            if last_checkpoint.elapsed() >= gap && self.start_checkpoint() {
                last_checkpoint = Instant::now();
            }
        }
        if let Some(done) = self.finish_checkpoint(true).await {
            checkpointed = done.unwrap_or(checkpointed);
        }
        if self.applied_offset() > checkpointed || checkpointed == 0 {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Offers an applied event, the rollup windows it changed and the alert transitions it
    /// caused to the tenant's live subscribers.
    fn publish_event(&self, ev: Event, rollups: &TenantRollups, notices: &[AlertNotice]) {
        use crate::Channel;
        let rollups_watched = self.feed.watched(&ev.tenant, Channel::Rollups);
        if !rollups_watched && notices.is_empty() && !self.feed.watched(&ev.tenant, Channel::Events)
        {
            return;
        }
        let device = ev.device_id.as_deref().unwrap_or("");
        let r = Resolution::Minute;
        let start = r.window_start(ev.time);
        let updates: Vec<Live> = ev
            .metrics
            .keys()
            .filter(|_| rollups_watched)
            .filter_map(|m| {
                let (_, _, agg) = rollups
                    .metric_windows(r, m, Some(device), start, start + 1)
                    .next()?;
                Some(Live::Rollup(RollupUpdate::new(device, m, r, start, agg)))
            })
            .collect();
        let tenant = ev.tenant.clone();
        self.feed.publish(
            &tenant,
            std::iter::once(Live::Event(ev))
                .chain(updates)
                .chain(notices.iter().cloned().map(Live::Alert)),
        );
    }

    /// Hands alert transitions to the notifier, dropping (and counting) what does not fit.
    fn notify(&self, notices: Vec<AlertNotice>) {
        for n in notices {
            metrics::counter!("eddy_stream_alert_transitions_total", "transition" => n.transition.name()).increment(1);
            if self.notices.try_send(n).is_err() {
                metrics::counter!("eddy_stream_alert_notices_dropped_total").increment(1);
            }
        }
    }

    /// Drops what memory no longer needs: persisted windows past their horizon (none while a
    /// flush is unwritten), idle alert state. Over `max_windows`, the horizons are halved
    /// (pass after pass, down to 1/2^20) until memory fits; they grow back one step per pass
    /// once it is under half the budget.
    fn evict(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let lateness = self.config.lateness_ns();
        let budget = self.config.max_windows;
        let mut s = self.state.write().map_err(|_| poisoned())?;
        // Read under the lock: a checkpoint takes flushes under it too.
        let hold = self.flusher.unwritten();
        let mut shift = self.pressure.load(SeqCst);
        let total = loop {
            for t in s.tenants.values_mut() {
                t.evict(lateness, |r| {
                    if hold {
                        i64::MAX
                    } else {
                        self.config.horizon_ns(r) >> shift
                    }
                });
            }
            let total: usize = s.tenants.values().map(TenantRollups::len).sum();
            if hold || budget == 0 || total <= budget || shift >= MAX_PRESSURE {
                break total;
            }
            shift += 1;
        };
        if shift > 0 && total < budget / 2 {
            shift -= 1;
        }
        self.pressure.store(shift, SeqCst);
        metrics::gauge!("eddy_stream_horizon_divisor").set(f64::from(1u32 << shift));
        metrics::gauge!("eddy_stream_windows").set(total as f64);
        let now = self.clock.now_ns();
        for t in s.alerts.values_mut() {
            t.evict(now);
        }
        metrics::gauge!("eddy_stream_alert_series").set(
            s.alerts
                .values()
                .map(TenantAlerts::tracked_series)
                .sum::<usize>() as f64,
        );
        Ok(())
    }

    /// Opens dead-man alerts for series silent past their rule's limit.
    fn check_silence(&self) -> Result<()> {
        let now = self.clock.now_ns();
        let mut notices = Vec::new();
        {
            let mut s = self.state.write().map_err(|_| poisoned())?;
            for (tenant, t) in &mut s.alerts {
                let start = notices.len();
                t.check_silence(tenant, now, &mut notices);
                self.feed
                    .publish(tenant, notices[start..].iter().cloned().map(Live::Alert));
            }
        }
        self.notify(notices);
        Ok(())
    }

    /// Under the write lock: queues the windows closed since the last checkpoint for the rollup
    /// files and copies the state without persisted windows (a copy: about 6× cheaper than
    /// serializing it).
    fn snapshot(&self) -> Result<State> {
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
    fn start_checkpoint(&self) -> bool {
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
    async fn finish_checkpoint(&self, wait: bool) -> Option<std::result::Result<u64, ()>> {
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
    fn paced(&self) -> Duration {
        let took = self
            .last_checkpoint_took
            .lock()
            .map(|t| *t)
            .unwrap_or_default();
        self.config.checkpoint_interval.max(took * CHECKPOINT_DUTY)
    }

    /// Writes a checkpoint (after any in flight) and commits the log consumer; returns the
    /// offset it covers (the final one, on shutdown, with the loop stopped).
    async fn checkpoint(&self) -> Result<u64> {
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

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.zst")
}

fn write_checkpoint(dir: &Path, json: &[u8]) -> Result<()> {
    let path = checkpoint_path(dir);
    let tmp = dir.join("checkpoint.zst.tmp");
    let compressed = zstd::encode_all(json, 3).map_err(|e| Error::io(&tmp, e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(&compressed)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The offset the checkpoint in `dir` covers, if there is one.
pub fn checkpoint_offset(dir: &Path) -> Result<Option<u64>> {
    Ok(load_checkpoint(dir)?.map(|s| s.offset))
}

fn load_checkpoint(dir: &Path) -> Result<Option<State>> {
    let path = checkpoint_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let json = zstd::decode_all(bytes.as_slice()).map_err(|e| Error::io(&path, e))?;
    let c: CheckpointOwned = serde_json::from_slice(&json)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    if c.version != CHECKPOINT_VERSION {
        return Err(Error::Checkpoint(format!(
            "{}: unsupported version {}",
            path.display(),
            c.version
        )));
    }
    Ok(Some(c.state))
}
